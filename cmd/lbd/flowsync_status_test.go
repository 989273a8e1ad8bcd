package main

import (
	"strings"
	"testing"

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
