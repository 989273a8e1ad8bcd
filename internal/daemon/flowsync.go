package daemon

// Flow sync (pkg/flowsync): the flows at risk shared with the other LB nodes over the
// cluster, the flows they share written into this node's data path.

import (
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/config"
	"github.com/lbdproj/lbd/pkg/flowsync"
)

// flowPath is the data path as flow sync needs it: a scanner of the LB's flow tables and
// its adopted-flow maps (both used by the syncer's goroutine alone), and its counters.
type flowPath struct {
	lb       *dataplane.LB
	scanner  *dataplane.FlowScanner
	adopted  *dataplane.Adopted
	restored []dataplane.SharedFlow // what the pinned maps held at start
}

func (p *flowPath) AtRisk(visit func(dataplane.SharedFlow)) (dataplane.ScanStats, error) {
	return p.scanner.AtRisk(visit)
}

func (p *flowPath) PutAdopted(flows []dataplane.SharedFlow) ([]dataplane.SharedFlow, error) {
	return p.adopted.Put(flows)
}

func (p *flowPath) DeleteAdopted(flows []dataplane.Flow) error { return p.adopted.Delete(flows) }

func (p *flowPath) ReadAdopted() ([]dataplane.SharedFlow, error) {
	r := p.restored
	p.restored = nil
	return r, nil
}

func (p *flowPath) FlowSyncEvents() (map[string]uint64, error) { return p.lb.FlowSyncEvents() }

// flowTransport sends flow sync's messages over the cluster's streams.
type flowTransport struct{ c *cluster.Cluster }

func (t flowTransport) Peers() []string                    { return t.c.FlowPeers() }
func (t flowTransport) Send(node string, msg []byte) error { return t.c.SendFlows(node, msg) }

// newFlowSync makes the syncer of a node in a cluster, on or off as cfg says; Run starts it.
// A node alone has none, and empties the adopted-flow maps.
func (d *Daemon) newFlowSync(cfg *config.Config) (*flowsync.Syncer, error) {
	adopted, restored, err := d.lb.OpenAdopted()
	if err != nil {
		return nil, err
	}
	if d.cluster == nil || cfg.Cluster == nil {
		// alone: what a previous run in a cluster adopted would be used unrefreshed
		gone := make([]dataplane.Flow, len(restored))
		for i, f := range restored {
			gone[i] = f.Flow
		}
		return nil, adopted.Delete(gone)
	}
	return flowsync.New(flowsync.Options{
		Node:       cfg.Node.Name,
		DataPath:   &flowPath{lb: d.lb, scanner: d.lb.NewFlowScanner(), adopted: adopted, restored: restored},
		Transport:  flowTransport{d.cluster},
		Enabled:    cfg.Cluster.FlowSync,
		Registerer: d.reg,
		Logger:     d.log,
	})
}

// receiveFlows hands a message from another node to the syncer, once there is one.
func (d *Daemon) receiveFlows(msg []byte) {
	if s := d.flowSync.Load(); s != nil {
		s.Receive(msg)
	}
}

// flowSyncAppliedLocked tells flow sync that cfg was written into the data path: the switch
// may have moved, and the backends and rings may have changed.
func (d *Daemon) flowSyncAppliedLocked(cfg *config.Config) {
	s := d.flowSync.Load()
	if s == nil {
		return
	}
	s.SetEnabled(cfg.Cluster != nil && cfg.Cluster.FlowSync)
	s.Changed(d.fingerprintLocked())
}
