package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/lbdproj/lbd/internal/testbed"
)

// The point-to-point topology (docs/ARCHITECTURE.md, "Measuring the data path") is a point-to-point test bed whose
// client, lb0 and be0 play gen, lb and sink:
//
//	gen [eth0] ─veth─ [eth1] lb [eth0] ─veth─ [eth0] sink
//
// internal/testbed names the namespaces <prefix>-<id>-{client,lb0,be0}, keeps the run's
// bpffs in $TMPDIR/<prefix>-<id>-* and holds an flock on /run/lbd-testbed/<prefix>-<id>.lock
// while the run lives, so testbed.Cleanup(prefix) at the start of a run removes what a
// killed run left behind and leaves runs that are alive alone.
const prefix = "lbdtp"

// lbOutMTU is the MTU of lb's sink-facing veth: room for the outer header.
const lbOutMTU = testbed.FabricMTU

// The addresses the frames carry, those the test bed gives gen, lb and sink (newTopo checks
// that they still are). The path is XDP end to end: they only make the frames look real.
var (
	client   = netip.MustParseAddr("198.18.1.2")  // gen's: the constant flow's source
	lbOut    = netip.MustParseAddr("198.18.0.2")  // lb's toward the sink: the outer source
	backend0 = netip.MustParseAddr("198.18.0.11") // the sink's; backends .11, .12, … all lead to it
)

// topo is a built topology. close tears it down.
type topo struct {
	fleet         *testbed.Fleet
	gen, lb, sink *testbed.Host
	lbIn          string // lb's gen-facing link, where xdp_lb runs

	genIfindex, lbInIfindex, lbOutIfindex, sinkIfindex int
	genMAC, lbInMAC, lbOutMAC, sinkMAC                 net.HardwareAddr
}

func newTopo() (_ *topo, err error) {
	testbed.Cleanup(prefix) // leftovers of killed runs; live runs hold their lock
	f, err := testbed.New(testbed.Options{Prefix: prefix, PointToPoint: true})
	if err != nil {
		return nil, err
	}
	t := &topo{fleet: f, gen: f.Client, lb: f.LBs[0], sink: f.Backends[0], lbIn: f.Client.Peer}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.close())
		}
	}()
	for _, x := range []struct {
		host  *testbed.Host
		role  string
		addr  netip.Addr
		frame netip.Addr
	}{{t.gen, "gen", t.gen.Addr, client}, {t.lb, "lb", t.lb.Addr, lbOut}, {t.sink, "sink", t.sink.Addr, backend0}} {
		if x.addr != x.frame {
			return nil, fmt.Errorf("%s (%s) has %s, the frames say %s", x.role, x.host.Name, x.addr, x.frame)
		}
	}
	in, err := t.lb.Interface(t.lbIn)
	if err != nil {
		return nil, err
	}
	t.genIfindex, t.genMAC = t.gen.Ifindex, t.gen.MAC
	t.lbInIfindex, t.lbInMAC = in.Index, in.HardwareAddr
	t.lbOutIfindex, t.lbOutMAC = t.lb.Ifindex, t.lb.MAC
	t.sinkIfindex, t.sinkMAC = t.sink.Ifindex, t.sink.MAC
	return t, nil
}

// close removes the test bed and says what of it is left (it should be nothing); the
// caller has closed or detached every BPF link first.
func (t *topo) close() error {
	err := t.fleet.Close()
	if left := t.fleet.Leftovers(); len(left) > 0 {
		err = errors.Join(err, fmt.Errorf("left behind: %v", left))
	}
	return err
}
