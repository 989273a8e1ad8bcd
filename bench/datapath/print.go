package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
)

func printHeader(r Results) {
	pin := fmt.Sprintf("pinned to CPU %d", r.PinnedCPU)
	if r.PinnedCPU < 0 {
		pin = "not pinned"
	}
	fmt.Printf("xdp_lb data path, BPF_PROG_TEST_RUN; %d backends, one VIP, SYN flood guard off; %d rounds, every scenario in every round\n",
		r.Backends, r.Rounds)
	fmt.Printf("kernel %s, %s, %d CPUs; measuring thread %s; kernel.bpf_stats_enabled %v\n", r.Kernel, r.CPU, r.CPUs, pin, r.BPFStats)
	if r.BPFStats {
		fmt.Println("  (bpf stats on: every run also reads the clock twice for the program's statistics, and the figures include it)")
	}
	fmt.Println()
}

func printMethod(m MethodResult) {
	fmt.Printf("method %s: %s\n", m.Method, m.Description)
	fmt.Printf("%d samples per scenario (%d runs each), %.1f s\n", m.Samples, m.RunsPer, m.Seconds)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	if m.Method == "call" {
		fmt.Fprintf(tw, "scenario\tns median\tp10\tp90\t× XDP_PASS\t× IPIP floor\t× insert floor\t\n")
		for _, r := range m.Rows {
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t%s\t\n", r.Scenario, r.Median, r.P10, r.P90, r.XPass, r.XIPIP, xInsert(r))
		}
	} else {
		fmt.Fprintf(tw, "scenario\tns/run median\tp10\tp90\tnet ns\tnet × IPIP floor net\tnet × insert floor net\t\n")
		for _, r := range m.Rows {
			x := fmt.Sprintf("%.2f", r.XIPIP)
			if r.Floor && r.Key != "floor_ipip" && r.Key != "floor_insert" {
				x = "-"
			}
			fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%.0f\t%.1f\t%s\t%s\t\n", r.Scenario, r.Median, r.P10, r.P90, r.Net, x, xInsert(r))
		}
	}
	tw.Flush()
	if m.Method == "call" {
		fmt.Printf("clock: %.0f%% of the XDP_PASS floor's samples are a multiple of 10 ns or one more (about 20%% if the clock had 1 ns steps):\n", 100*m.ClockGrid)
		fmt.Println("  the kernel's clock moves in ~10 ns steps here, so each one-call figure is ±10 ns")
		fmt.Println("ratios: per round, the median's ratio to the floor's median; the median of those over the rounds")
	} else {
		fmt.Println("net: the median less the wrapper floor's (the XDP_PASS floor row: restore, tail call, empty program; for the")
		fmt.Println("  rows with a new flow per run, the wrapper floor with a new flow per run); × IPIP floor net: net / (IPIP floor −")
		fmt.Println("  wrapper floor), per round; × insert floor net: a new flow's net / the insert floor's net")
	}
	fmt.Println("insert floor: a flow lookup that misses and an insert into an LRU hash shaped like xdp_lb's flows_v4, then the")
	fmt.Println("  IPIP floor's work; a new flow's row (miss) beside it shows what xdp_lb adds to what every stateful balancer pays")
	fmt.Println()
}

// printComparison sets the two methods side by side for xdp_lb's rows.
func printComparison(call, wrap MethodResult) {
	fmt.Println("the two methods side by side (ns; call = one packet per call, wrap = Repeat through the wrapper):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario\tcall\twrap net\tcall − wrap net\tcall × IPIP\twrap net × IPIP net\t\n")
	for _, c := range call.Rows {
		for _, w := range wrap.Rows {
			if w.Key != c.Key {
				continue
			}
			wn, xi := w.Net, fmt.Sprintf("%.2f", w.XIPIP)
			if c.Key == "floor_pass" {
				xi = "-"
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.0f\t%.2f\t%s\t\n", c.Scenario, c.Median, wn, c.Median-wn, c.XIPIP, xi)
		}
	}
	tw.Flush()
	fmt.Println("call − wrap net: what one packet per call adds to a run: the clock reads and the call's other fixed costs,")
	fmt.Println("  and the cold caches and branch predictors after the system call, which cost a long program more")
	fmt.Println()
}

func printPaths(r Results) {
	fmt.Println("programs as loaded (the kernel's figures):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "program\txlated insns\tverified insns\tjited bytes\tcalls in xlated code\t\n")
	for _, p := range r.Programs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", p.Name, p.Xlated, p.Verified, p.Jited, p.Calls)
	}
	tw.Flush()
	fmt.Println("\nxdp_lb's work per scenario, derived from bpf/xdp_lb.c (the reason, event and VIP counters were checked to move as listed):")
	tw = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "scenario\tmap lookups\tupdates\tother helpers\tcounted as\t\n")
	for _, p := range r.Paths {
		counted := p.Reason
		if p.Event != "" {
			counted += ", " + p.Event
		}
		fmt.Fprintf(tw, "%s\t%d: %s\t%d %s\t%s\t%s\t\n", p.Key, len(p.Lookups), strings.Join(p.Lookups, " "), len(p.Updates),
			strings.Join(p.Updates, " "), strings.Join(p.Helpers, " "), counted)
	}
	tw.Flush()
}

// xInsert is a new flow's ratio to the flow-insert floor, or "-" for the other rows.
func xInsert(r Row) string {
	if r.XInsert == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", r.XInsert)
}
