package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/lbdproj/lbd/internal/daemon"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/flowsync"
)

func TestPrintFlowSync(t *testing.T) {
	var b strings.Builder
	printFlowSync(&b, &flowsync.Status{Enabled: true, AtRisk: 40, Shared: 40, Peers: 2, Adopted: 89, Unresolved: 1,
		AdoptedHits: 7, SentRate: 120.4, ReceivedRate: 250, Scanned: 99, ScanTime: 0.0108})
	want := "\nflow sync: at risk 40  shared 40 with 2 nodes  adopted 89 (unresolved 1)  adopted hits 7\n" +
		"  sent 120 B/s, received 250 B/s  last scan 99 flows in 10.8ms\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	printFlowSync(&b, &flowsync.Status{})
	if !strings.Contains(b.String(), "flow sync: off") {
		t.Errorf("switched off: %q", b.String())
	}
	b.Reset()
	printFlowSync(&b, nil)
	if b.String() != "" {
		t.Errorf("a node alone printed %q", b.String())
	}
}

func TestPrintAdopted(t *testing.T) {
	var b strings.Builder
	printExplain(&b, daemon.Explanation{Node: "lb1", Protocol: "tcp", Src: "198.18.1.2:61002", Dst: "198.18.0.10:80",
		VIP: "web", VIPAddress: "198.18.0.10:80/tcp", Backend: "198.18.0.12", By: "adopted", State: "active", Probe: "up",
		Adopted: &dataplane.FlowEntry{BackendID: 2, Generation: 2, Backend: netip.MustParseAddr("198.18.0.12")},
		Ring:    dataplane.RingSlot{Size: 65537, Slot: 7, Backend: netip.MustParseAddr("198.18.0.14")}})
	for _, want := range []string{
		"flow table: no entry on this node\n",
		"adopted (flow sync): backend 198.18.0.12, which another LB node recorded (a packet that misses the flow table goes there)\n",
		"=> 198.18.0.12, by a flow another LB node shared; on this node it is active, probe up\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lbd explain lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	printAdopted(&b, &dataplane.FlowEntry{BackendID: 3, Generation: 1, Stale: true, StaleReason: "the backend is down"})
	if want := "adopted (flow sync): backend id 3 generation 1, ignored: the backend is down\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}
