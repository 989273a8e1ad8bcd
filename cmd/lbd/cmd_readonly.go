package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lbdproj/lbd/internal/daemon"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/announce"
	"github.com/lbdproj/lbd/pkg/config"
)

// cmdValidate checks a config and changes nothing.
func cmdValidate(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "validate", "FILE")
	pos, ok := parseFlags(fs, args)
	if !ok {
		return exitUsage
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitUsage
	}
	cfg, err := config.Load(pos[0])
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitUsage
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(e.stderr, "warning:", w)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "VIP\tADDRESS\tBACKENDS\tRING\tHEALTH\n")
	for _, v := range cfg.VIPs {
		ring := strconv.Itoa(int(v.RingSize))
		if v.RingSizeAuto {
			ring += " (auto)"
		}
		fmt.Fprintf(tw, "%s\t%s/%s\t%d\t%s\t%s\n", v.Name, netip.AddrPortFrom(v.Address, v.Port), v.Protocol, len(v.Backends), ring, v.Health.Type)
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "%s: ok (digest %s)\n", pos[0], cfg.Digest()[:12])
	return exitOK
}

// fetchStatus reads a running lbd's status API.
func fetchStatus(ctx context.Context, client *http.Client, api string) (daemon.Status, error) {
	var st daemon.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, fmt.Errorf("is lbd running? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return st, fmt.Errorf("status: %s: %s", resp.Status, b)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func printStatus(w io.Writer, st daemon.Status) {
	fmt.Fprintf(w, "node %s  interface %s  xdp %s  config %s\n", st.Node, st.Interface, st.XDPMode, shortDigest(st.ConfigDigest))
	switch {
	case st.XDPMode == string(dataplane.XDPChained):
		fmt.Fprintf(w, "xdp_lb is %s\n", st.XDPModeNote)
	case st.XDPModeNote != "":
		fmt.Fprintf(w, "WARNING: xdp_lb runs in %s mode: %s\n", st.XDPMode, st.XDPModeNote)
	}
	for _, v := range st.VIPs {
		fmt.Fprintf(w, "\nVIP %s  %s/%s  ring %d slots (%s)  packets %d\n", v.Name, net.JoinHostPort(v.Address, strconv.Itoa(int(v.Port))),
			v.Protocol, v.RingSize, v.Fingerprint, v.Packets)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  BACKEND\tSTATE\tPROBE\tNODES SEE\tWEIGHT\tSLOTS\tNEXT HOP\tPACKETS\tLAST ERROR\n")
		for _, b := range v.Backends {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%s\n", b.Address, b.State, b.Probe, viewsOf(b.Views),
				b.Weight, b.Slots, b.NextHop, b.Packets, b.Error)
		}
		tw.Flush()
	}
	if c := st.Cluster; c != nil {
		agree := "all LB nodes serve the same rings"
		if !c.FingerprintsAgree {
			agree = "RINGS DIFFER between LB nodes"
		}
		fmt.Fprintf(w, "\ncluster (quorum %s): %s\n", c.Quorum, agree)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  MEMBER\tADDR\tSTATE\tSAME CONFIG\tRINGS\n")
		for _, m := range c.Members {
			name := m.Name
			if m.Self {
				name += " (self)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%v\t%s\n", name, m.Addr, m.State, m.SameConfig, m.Fingerprint)
		}
		tw.Flush()
	}
	if st.BGP != nil {
		printBGP(w, *st.BGP, time.Now())
	}
	printFlowSync(w, st.FlowSync)
	printCounters(w, st.Verdicts, st.Events)
	printFlowTables(w, st.FlowTables)
}

// printBGP shows the sessions and, per VIP address, whether it is announced and what holds
// it back; now is the clock the ages are measured by.
func printBGP(w io.Writer, b announce.Status, now time.Time) {
	fmt.Fprintf(w, "\nbgp: AS %d, router id %s", b.ASN, b.RouterID)
	if b.Draining {
		fmt.Fprintf(w, ", DRAINING (stopping)")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  PEER\tASN\tSTATE\tUP FOR\tROUTES SENT\tBFD\tLAST ERROR\n")
	for _, p := range b.Peers {
		up := "-"
		if !p.Since.IsZero() {
			up = now.Sub(p.Since).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%d\t%s\t%s\n", p.Address, p.ASN, p.State, up, p.RoutesSent, cmp.Or(p.BFD, "off"), p.LastError)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  ADDRESS\tVIPS\tROUTE\tFOR\tWHY\n")
	for _, a := range b.Addresses {
		state, why := "announced", a.Pending
		if !a.Announced {
			state, why = "held", a.Held
		}
		var reasons []string
		for _, r := range why {
			reasons = append(reasons, r.String())
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", a.Address, strings.Join(a.VIPs, ","), state,
			now.Sub(a.Since).Round(time.Second), strings.Join(reasons, "; "))
	}
	tw.Flush()
}

func printCounters(w io.Writer, verdicts map[string]dataplane.Counter, events map[string]uint64) {
	fmt.Fprintf(w, "\ncounters:")
	for _, k := range []string{"tx", "pass", "pass_fragment", "drop_malformed", "drop_no_backend", "drop_encap_failed", "drop_too_big", "drop_bad_source", "drop_fragment_orphan"} {
		fmt.Fprintf(w, " %s=%d", k, verdicts[k].Packets)
	}
	fmt.Fprintf(w, "\nflow table:")
	for _, k := range []string{"lru_hit", "lru_miss", "lru_skip_down", "syn", "syn_unrecorded", "quic_cid", "fragment", "icmp_error"} {
		fmt.Fprintf(w, " %s=%d", k, events[k])
	}
	fmt.Fprintln(w)
}

// printFlowTables says how full the flow tables are, "ipv4 12 of 1048576 (0.0%)".
func printFlowTables(w io.Writer, fill map[string]dataplane.TableFill) {
	if len(fill) == 0 {
		return
	}
	fmt.Fprintf(w, "flow tables:")
	for _, fam := range []string{"ipv4", "ipv6"} {
		f := fill[fam]
		fmt.Fprintf(w, " %s %d of %d (%.1f%%)", fam, f.Entries, f.Size, 100*float64(f.Entries)/float64(max(f.Size, 1)))
	}
	fmt.Fprintln(w)
}

// viewsOf is each LB node's probe result, "lb0:up lb1:down", or "-" outside a cluster.
func viewsOf(views map[string]bool) string {
	if len(views) == 0 {
		return "-"
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(views)) {
		st := "down"
		if views[n] {
			st = "up"
		}
		parts = append(parts, n+":"+st)
	}
	return strings.Join(parts, " ")
}

func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func cmdStatus(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "status", "[--api ADDR] [--json]")
	api := fs.String("api", config.DefaultAPIAddr, "the daemon's status API address (node.api_addr)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, ok := parseFlags(fs, args); !ok {
		return exitUsage
	}
	st, err := fetchStatus(ctx, &http.Client{Timeout: 5 * time.Second}, *api)
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd status: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
		return exitOK
	}
	printStatus(e.stdout, st)
	return exitOK
}

func cmdDetach(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "detach", "--pin-dir DIR")
	pinDir := fs.String("pin-dir", config.DefaultPinDir, "bpffs directory lbd pinned into")
	if _, ok := parseFlags(fs, args); !ok {
		return exitUsage
	}
	err := dataplane.DetachPinned(*pinDir)
	if err == nil {
		err = dataplane.DetachPinnedBackendHost(*pinDir)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd detach: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(e.stdout, "detached and unpinned everything lbd left in %s\n", *pinDir)
	return exitOK
}
