package main

import (
	"fmt"
	"io"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/flowsync"
)

// printFlowSync is lbd status's flow sync line: what this node shares and adopts, and what
// it costs (nothing for a node alone).
func printFlowSync(w io.Writer, fs *flowsync.Status) {
	if fs == nil {
		return
	}
	if !fs.Enabled {
		fmt.Fprintf(w, "\nflow sync: off (cluster.flow_sync: false)\n")
		return
	}
	fmt.Fprintf(w, "\nflow sync: at risk %d  shared %d with %d nodes  adopted %d (unresolved %d)  adopted hits %d\n",
		fs.AtRisk, fs.Shared, fs.Peers, fs.Adopted, fs.Unresolved, fs.AdoptedHits)
	fmt.Fprintf(w, "  sent %.0f B/s, received %.0f B/s  last scan %d flows in %v\n",
		fs.SentRate, fs.ReceivedRate, fs.Scanned, time.Duration(fs.ScanTime*float64(time.Second)).Round(time.Microsecond))
}

// printAdopted is lbd explain's line on the flow's adopted entry, when there is one.
func printAdopted(w io.Writer, a *dataplane.FlowEntry) {
	switch {
	case a == nil:
	case a.Stale:
		fmt.Fprintf(w, "adopted (flow sync): backend id %d generation %d, ignored: %s\n", a.BackendID, a.Generation, a.StaleReason)
	default:
		fmt.Fprintf(w, "adopted (flow sync): backend %s, which another LB node recorded (a packet that misses the flow table goes there)\n", a.Backend)
	}
}
