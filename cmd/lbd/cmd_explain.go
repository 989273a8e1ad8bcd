package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/lbdproj/lbd/internal/daemon"
	"github.com/lbdproj/lbd/pkg/config"
)

// cmdExplain asks a running lbd where one flow goes and why: its flow table entry or ring
// slot, the VIP, the backend's state, and each LB node's view as gossip carries it. The
// status API listens on loopback, so the other nodes are not asked over HTTP: gossip already
// carries their configs, ring fingerprints and probe results, which is what decides where
// their rings send the flow. Flow table entries are each node's own and are not gossiped.
func cmdExplain(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "explain", "[--api ADDR] [--json] PROTO SRC:PORT DST:PORT")
	api := fs.String("api", config.DefaultAPIAddr, "the daemon's status API address (node.api_addr)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, ok := parseFlags(fs, args)
	if !ok {
		return exitUsage
	}
	if len(pos) != 3 {
		fs.Usage()
		return exitUsage
	}
	if _, err := daemon.ParseFlow(pos[0], pos[1], pos[2]); err != nil {
		fmt.Fprintf(e.stderr, "lbd explain: %v\n", err)
		return exitUsage
	}
	ex, err := fetchExplain(ctx, &http.Client{Timeout: 5 * time.Second}, *api, pos[0], pos[1], pos[2])
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd explain: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(ex)
		return exitOK
	}
	printExplain(e.stdout, ex)
	return exitOK
}

func fetchExplain(ctx context.Context, client *http.Client, api, proto, src, dst string) (daemon.Explanation, error) {
	var ex daemon.Explanation
	q := url.Values{"proto": {proto}, "src": {src}, "dst": {dst}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+"/explain?"+q.Encode(), nil)
	if err != nil {
		return ex, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return ex, fmt.Errorf("is lbd running? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return ex, fmt.Errorf("explain: %s: %s", resp.Status, b)
	}
	return ex, json.NewDecoder(resp.Body).Decode(&ex)
}

func printExplain(w io.Writer, ex daemon.Explanation) {
	fmt.Fprintf(w, "%s %s -> %s, asked lb node %s\n", ex.Protocol, ex.Src, ex.Dst, ex.Node)
	if ex.VIPAddress == "" {
		fmt.Fprintln(w, "not a VIP: xdp_lb passes its packets to the host")
		return
	}
	fmt.Fprintf(w, "VIP %s (%s)\n", ex.VIP, ex.VIPAddress)
	switch fe := ex.FlowEntry; {
	case fe == nil:
		fmt.Fprintln(w, "flow table: no entry on this node")
	case fe.Stale:
		fmt.Fprintf(w, "flow table: entry for backend id %d generation %d, ignored: %s\n", fe.BackendID, fe.Generation, fe.StaleReason)
	default:
		fmt.Fprintf(w, "flow table: backend %s (id %d, generation %d)\n", fe.Backend, fe.BackendID, fe.Generation)
	}
	if fe := ex.FlowEntry; fe != nil {
		// the LRU keeps no timestamp per entry: say what that means rather than print an age
		fmt.Fprintln(w, "  (the table keeps no age: an entry stays while its flow's packets keep it among the recently used)")
	}
	printAdopted(w, ex.Adopted)
	if ex.Ring.Size == 0 {
		fmt.Fprintln(w, "ring: empty, the VIP has no usable backend")
	} else {
		fmt.Fprintf(w, "ring: hash %#08x, slot %d of %d: backend %s (a new connection goes there)\n", ex.Ring.Hash, ex.Ring.Slot, ex.Ring.Size, ex.Ring.Backend)
		if ex.RingAsBuilt != "" && ex.RingAsBuilt != ex.Ring.Backend.String() {
			fmt.Fprintf(w, "  THE DATA PATH DIFFERS from the ring lbd built, which names %s there\n", ex.RingAsBuilt)
		}
	}
	if ex.Backend == "" {
		fmt.Fprintln(w, "=> dropped (drop_no_backend)")
	} else {
		by := "the ring"
		switch ex.By {
		case "flow_table":
			by = "the flow table"
		case "adopted":
			by = "a flow another LB node shared"
		}
		fmt.Fprintf(w, "=> %s, by %s; on this node it is %s, probe %s\n", ex.Backend, by, ex.State, ex.Probe)
	}
	if len(ex.Nodes) == 0 {
		return
	}
	subject := ex.Backend
	if subject == "" {
		subject = ex.Ring.Backend.String()
	}
	fmt.Fprintln(w, "\nLB nodes, as gossip shows them:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  NODE\tSTATE\tSAME CONFIG\tSAME RINGS\tITS PROBE OF %s\n", subject)
	for _, n := range ex.Nodes {
		name := n.Name
		if n.Self {
			name += " (self)"
		}
		probe := n.Probe
		if probe == "" {
			probe = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%v\t%v\t%s\n", name, n.State, n.SameConfig, n.SameRings, probe)
	}
	tw.Flush()
	if ex.Agree {
		fmt.Fprintf(w, "the LB nodes agree: each sends a new connection of this flow to %s\n", ex.Ring.Backend)
	} else {
		fmt.Fprintln(w, "THE LB NODES DISAGREE: a node with another config or other rings may send this flow elsewhere")
	}
	if ex.By == "flow_table" && ex.Backend != ex.Ring.Backend.String() {
		fmt.Fprintf(w, "flow tables are per node: a node that has not seen this flow sends its next packet to %s\n", ex.Ring.Backend)
	}
}
