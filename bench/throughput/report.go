package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lbdproj/lbd/bench/internal/host"
	"github.com/lbdproj/lbd/pkg/consistenthash"
)

func printHeader(b *bench, cells []*cell) {
	visit := visitTime()
	fmt.Printf("xdp_lb forwarding rate: real XDP (driver mode) on veths, gen ─ lb ─ sink (point-to-point, bpf_redirect)\n")
	fmt.Printf("kernel %s, %d CPUs (%s), load average %s at start\n", host.Kernel(), runtime.NumCPU(), host.CPUModel(), loadavg())
	fmt.Printf("command: go run ./bench/throughput %s\n", strings.Join(os.Args[1:], " "))
	fmt.Printf("generator: BPF_PROG_TEST_RUN live frames, XDP_TX on gen's veth: %d-byte TCP ACKs to %s:80, batch %d, %d frames per call;\n",
		*size, vip, *batch, *repeat)
	fmt.Printf("  each generator thread pinned to its own CPU (nice %d), which also runs lb's and sink's XDP for its frames\n", *nice)
	fmt.Printf("lb: %d backends, %s ring of %d slots, IPIP, bpf_redirect to the sink-facing veth (MTU %d)\n",
		*nBE, b.ringAlg, consistenthash.DefaultSize, lbOutMTU)
	fmt.Printf("%v measured per cell: %d rounds of %v, every cell in every round, each visit after %v of warm-up,\n",
		*duration, *rounds, visit, *warmup)
	fmt.Printf("  and an uncounted round before them that fills the flow table (about %v in all)\n\n",
		(time.Duration(len(cells)*(*rounds+1)) * (visit + *warmup)).Round(time.Second))
}

// Row is one cell's figures, as -json writes them.
type Row struct {
	Program     string    `json:"program"`
	Traffic     string    `json:"traffic"`
	Threads     int       `json:"threads"`
	Mpps        float64   `json:"mpps"`
	RoundsMpps  []float64 `json:"rounds_mpps"`
	MppsPerCore float64   `json:"mpps_per_core"`
	NsPerPkt    float64   `json:"ns_per_pkt_per_core"`
	XIPIP       float64   `json:"x_ipip_floor,omitempty"` // median over rounds of Mpps/core over the floor's
	AtSink      float64   `json:"at_sink"`
	LRUMiss     float64   `json:"lru_miss,omitempty"`
}

func report(cells []*cell, progs []lbProg, patterns []*traffic) []Row {
	var rows []Row
	floorOf := map[int]result{}
	for _, c := range cells {
		if progs[c.prog].name == "floor: IPIP push + redirect" {
			floorOf[c.threads] = c.res
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "program\ttraffic\tthreads\tMpps\trounds min/med/max\tlb tx Mpps\tCPU had\tMpps/core\tns/pkt\t× IPIP floor\tat sink\tLRU miss\t\n")
	for _, c := range cells {
		r := c.res
		lbTx, lru, ratio := "-", "-", "-"
		if progs[c.prog].isLB {
			lbTx = fmt.Sprintf("%.2f", float64(r.lbTx)/r.secs/1e6)
			if r.hit+r.miss > 0 {
				lru = fmt.Sprintf("%.1f%%", 100*float64(r.miss)/float64(r.hit+r.miss))
			}
		}
		row := Row{Program: progs[c.prog].name, Traffic: patterns[c.traffic].name, Threads: c.threads, Mpps: r.mpps(),
			RoundsMpps: r.rounds, MppsPerCore: r.perCore(), NsPerPkt: 1e3 / r.perCore(), AtSink: float64(r.sink) / float64(max(r.sent, 1))}
		if progs[c.prog].isLB && r.hit+r.miss > 0 {
			row.LRUMiss = float64(r.miss) / float64(r.hit+r.miss)
		}
		if f, ok := floorOf[c.threads]; ok && len(f.roundsCore) == len(r.roundsCore) {
			// round by round, then the median: the machine's speed drifts between rounds
			// (other work, the host), and a cell and its floor in one round see about the same
			var q []float64
			for i := range r.roundsCore {
				q = append(q, r.roundsCore[i]/f.roundsCore[i])
			}
			row.XIPIP = host.Median(q)
			ratio = fmt.Sprintf("%.2f", row.XIPIP)
		}
		rows = append(rows, row)
		rs := slices.Sorted(slices.Values(r.rounds))
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.2f/%.2f/%.2f\t%s\t%.0f%%\t%.2f\t%.0f\t%s\t%.1f%%\t%s\t\n", progs[c.prog].name, patterns[c.traffic].name,
			c.threads, r.mpps(), rs[0], host.Median(rs), rs[len(rs)-1], lbTx, 100*r.cpuSecs/(float64(c.threads)*r.secs), r.perCore(),
			1e3/r.perCore(), ratio, 100*float64(r.sink)/float64(max(r.sent, 1)), lru)
	}
	tw.Flush()
	fmt.Println()
	fmt.Println("Mpps: packets counted at the sink / measured time, all rounds; rounds min/med/max: the same per round")
	fmt.Println("CPU had: CPU time of the generator threads (the LB's and the sink's XDP run in their softirq context) and of")
	fmt.Println("  ksoftirqd on their CPUs / (threads × measured time); below 100% other work on the machine took the rest")
	fmt.Println("Mpps/core: packets at the sink / that CPU time: the rate of one core that is not shared; ns/pkt: its inverse,")
	fmt.Println("  the whole path's cost per packet on one core (generator, veth, LB program, veth, sink)")
	fmt.Println("× IPIP floor: Mpps/core / the IPIP floor's with as many threads, in each round; the median of the rounds")
	fmt.Println("at sink: packets counted at the sink / frames the generator sent (the rest were lost on the way)")
	fmt.Println("LRU miss: xdp_lb flow-table misses / lookups")
	for _, c := range cells {
		r := c.res
		if progs[c.prog].isLB && (r.ipip != r.sink || r.lbOther > 0 || r.lbTx+r.lbTx/100 < r.sink) {
			fmt.Printf("check: %s, %s, %d threads: sink %d (IPIP %d), lb tx %d, other verdicts %d\n",
				progs[c.prog].name, patterns[c.traffic].name, c.threads, r.sink, r.ipip, r.lbTx, r.lbOther)
		}
	}
	return rows
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
