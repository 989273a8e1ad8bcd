package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/cluster"
)

func TestParseFlow(t *testing.T) {
	f, err := ParseFlow("TCP", "198.18.0.1:40000", "198.18.0.10:80")
	if err != nil || f != (dataplane.Flow{Src: addr("198.18.0.1"), Dst: addr("198.18.0.10"), SrcPort: 40000, DstPort: 80, Proto: 6}) {
		t.Errorf("tcp: %+v, %v", f, err)
	}
	f, err = ParseFlow("udp", "[2001:db8::1]:5353", "[2001:db8::53]:53")
	if err != nil || f.Proto != 17 || f.Dst != addr("2001:db8::53") || f.SrcPort != 5353 {
		t.Errorf("udp6: %+v, %v", f, err)
	}
	for _, c := range []struct{ proto, src, dst, want string }{
		{"icmp", "198.18.0.1:1", "198.18.0.10:80", `protocol "icmp": want tcp or udp`},
		{"tcp", "198.18.0.1", "198.18.0.10:80", `source "198.18.0.1": want addr:port`},
		{"tcp", "198.18.0.1:1", "2001:db8::53:53", `destination "2001:db8::53:53": want addr:port`},
		{"tcp", "198.18.0.1:1", "[2001:db8::53]:53", "different families"},
	} {
		if _, err := ParseFlow(c.proto, c.src, c.dst); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s %s: %v, want %q", c.proto, c.src, c.dst, err, c.want)
		}
	}
}

// The answer puts the data path's lookups (here given) together with what this node serves
// (the VIP's name, the backend's state and probe, the ring it built) and each node's view.
func TestExplainLocked(t *testing.T) {
	d, _, cs := testStatus(t)
	web := dataplane.VIPKey{Addr: addr("198.18.0.10"), Port: 80, Proto: 6}
	f := dataplane.Flow{Src: addr("198.18.0.1"), Dst: addr("198.18.0.10"), SrcPort: 40000, DstPort: 80, Proto: 6}
	// the flow sits on .12 (draining: its flows stay); the ring, all .11, would send it there
	ex := dataplane.Explanation{VIP: web, IsVIP: true,
		Entry:   &dataplane.FlowEntry{BackendID: 2, Generation: 2, Backend: addr("198.18.0.12")},
		Ring:    dataplane.RingSlot{Hash: 12345, Size: 1009, Slot: 12345 % 1009, BackendID: 1, Backend: addr("198.18.0.11")},
		Backend: addr("198.18.0.12"), ByEntry: true}
	d.mu.Lock()
	got := d.explainLocked(f, ex, cs)
	fp := d.fingerprintLocked()
	d.mu.Unlock()
	want := Explanation{Node: "lb1", Protocol: "tcp", Src: "198.18.0.1:40000", Dst: "198.18.0.10:80",
		VIP: "web", VIPAddress: "198.18.0.10:80/tcp", FlowEntry: ex.Entry, Ring: ex.Ring,
		Backend: "198.18.0.12", By: "flow_table", State: "draining", Probe: "down", RingAsBuilt: "198.18.0.11",
		Nodes: []NodeView{
			{Name: "lb1", Self: true, State: "alive", SameConfig: true, SameRings: true, Fingerprint: "f1", Probe: "down"},
			{Name: "lb2", State: "alive", SameConfig: true, SameRings: false, Fingerprint: "f1", Probe: "up"},
		}}
	// lb2 gossips fingerprint f1, which is not this node's rings: they disagree
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("explain (-want +got):\n%s", diff)
	}

	// every node with this node's rings: they agree
	for i := range cs.Members {
		cs.Members[i].Fingerprint = fp
	}
	d.mu.Lock()
	got = d.explainLocked(f, ex, cs)
	d.mu.Unlock()
	if !got.Agree || !got.Nodes[1].SameRings {
		t.Errorf("same rings everywhere: agree %v, nodes %+v", got.Agree, got.Nodes)
	}
	// a live node with another config disagrees; a dead one does not count
	cs.Members = append(cs.Members, cluster.Member{Name: "lb3", State: "dead", Fingerprint: "old"})
	d.mu.Lock()
	got = d.explainLocked(f, ex, cs)
	d.mu.Unlock()
	if !got.Agree {
		t.Errorf("a dead node made the nodes disagree: %+v", got.Nodes)
	}
	cs.Members[1].SameConfig = false
	d.mu.Lock()
	got = d.explainLocked(f, ex, cs)
	d.mu.Unlock()
	if got.Agree {
		t.Errorf("a live node with another config: agree")
	}

	// alone: no nodes, agreeing with itself; a new flow goes by the ring
	ex.Entry, ex.Backend, ex.ByEntry = nil, ex.Ring.Backend, false
	d.mu.Lock()
	got = d.explainLocked(f, ex, nil)
	d.mu.Unlock()
	if got.Nodes != nil || !got.Agree || got.By != "ring" || got.Backend != "198.18.0.11" || got.State != "active" || got.Probe != "up" {
		t.Errorf("alone, by the ring: %+v", got)
	}
	// not a VIP: nothing but the flow
	d.mu.Lock()
	got = d.explainLocked(f, dataplane.Explanation{VIP: web}, nil)
	d.mu.Unlock()
	if got.VIP != "" || got.Backend != "" || got.By != "" || got.FlowEntry != nil {
		t.Errorf("not a VIP: %+v", got)
	}
}
