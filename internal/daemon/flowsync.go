package daemon

// Flow sync (pkg/flowsync): the flows at risk shared with the other LB nodes over the
// cluster, the flows they share written into this node's data path.

import (
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/config"
	"github.com/lbdproj/lbd/pkg/flowsync"
)

// flowPath is the data path as flow sync needs it: the LB's adopted-flow maps and a
// scanner of its flow tables (used by the syncer's goroutine alone).
type flowPath struct {
	*dataplane.LB
	scanner *dataplane.FlowScanner
}

func (p flowPath) AtRisk(visit func(dataplane.SharedFlow)) (dataplane.ScanStats, error) {
	return p.scanner.AtRisk(visit)
}

// flowTransport sends flow sync's messages over the cluster's streams.
type flowTransport struct{ c *cluster.Cluster }

func (t flowTransport) Peers() []string                    { return t.c.FlowPeers() }
func (t flowTransport) Send(node string, msg []byte) error { return t.c.SendFlows(node, msg) }

// newFlowSync makes the syncer of a node in a cluster (nil for a node alone), on or off as
// cfg says; Run starts it.
func (d *Daemon) newFlowSync(cfg *config.Config) (*flowsync.Syncer, error) {
	if d.cluster == nil || cfg.Cluster == nil {
		return nil, nil
	}
	return flowsync.New(flowsync.Options{
		Node:       cfg.Node.Name,
		DataPath:   flowPath{LB: d.lb, scanner: d.lb.NewFlowScanner()},
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
