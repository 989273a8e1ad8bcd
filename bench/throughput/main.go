// Command throughput measures how many packets per second xdp_lb forwards with real XDP on
// veths, in the point-to-point topology of docs/ARCHITECTURE.md ("Measuring the data path"):
//
//	gen ─veth─ lb (xdp_lb, bpf_redirect) ─veth─ sink (count, XDP_DROP)
//
// The generator is BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES): an XDP
// program (bpf/gen.c) writes a TCP ACK to the VIP into every frame and returns XDP_TX, so the
// frame leaves gen's veth and reaches xdp_lb in the NAPI of lb's veth; xdp_lb encapsulates it
// (IPIP) and redirects it to the sink-facing veth, where bpf/sink.c counts and drops it. All
// of that runs in softirq on the CPU of the thread that made the syscall, so one generator
// thread pinned to one CPU measures what one core moves through generator, LB and sink
// together. The rate is the sink's count over the measured time; xdp_lb's own tx counter and
// flow-table events, the generator's count and the CPU time the path got are printed beside
// it. Two floors (bpf/fwd.c: rewrite MACs + redirect; push IPIP + redirect) take xdp_lb's
// place in its XDP link for their turns: every round visits every cell, so a burst of other
// work on the machine hits them all alike.
//
//	go run ./bench/throughput [-duration 5s] [-rounds 5] [-threads 1,2] [-nice -10]
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lbdproj/lbd/bench/internal/host"
)

var (
	vip     = netip.MustParseAddr("198.18.0.10")
	flowNet = netip.MustParseAddr("198.19.0.0") // distinct flows: 198.19.0.0/16, port from the counter
)

const hashSeed = 0x6c62640a

var (
	duration = flag.Duration("duration", 5*time.Second, "measured time per cell, over all rounds")
	warmup   = flag.Duration("warmup", 300*time.Millisecond, "traffic before each visit's measurement starts")
	threadsF = flag.String("threads", "1,2", "generator thread counts, each thread pinned to its own CPU")
	cpusF    = flag.String("cpus", "", "the CPUs the generator threads are pinned to, in order (default 0,1,…)")
	size     = flag.Int("size", 60, "frame size in bytes without FCS (60 = a minimum Ethernet frame; the TCP ACK is padded)")
	repeat   = flag.Uint("repeat", 1<<16, "frames per BPF_PROG_TEST_RUN call (calls return often, so a stop is prompt)")
	batch    = flag.Uint("batch", 64, "live-frames batch size (frames per page-pool batch and per flush)")
	nBE      = flag.Int("backends", 10, "backends behind the VIP (all on the sink)")
	cycled   = flag.Uint("flows", 65536, "flows per generator thread in the cycled scenario (at most 131072 fit the LB's per-CPU LRU share)")
	floors   = flag.Bool("floors", true, "also measure the floors in xdp_lb's place")
	rounds   = flag.Int("rounds", 5, "rounds: -duration is split over them, every cell visited once per round")
	nice     = flag.Int("nice", 0, "nice value of the generator threads (e.g. -10 on a machine shared with other work)")
	jsonOut  = flag.String("json", "", "also write the results to this file as JSON")
)

// interrupted is set by SIGINT/SIGTERM: measurements stop at once and everything is torn down.
var interrupted atomic.Bool

var errInterrupted = errors.New("interrupted")

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "throughput: needs root (namespaces, veths, bpffs, XDP)")
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sig {
			if !interrupted.Swap(true) {
				fmt.Fprintf(os.Stderr, "throughput: %v: stopping and cleaning up\n", s)
			}
		}
	}()
	err := run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "throughput: %v\n", err)
		if errors.Is(err, errInterrupted) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

func run() (err error) {
	threads, err := checkFlags()
	if err != nil {
		return err
	}
	b, err := setUp()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.close()) }()
	cells := b.cells(threads)
	printHeader(b, cells)
	if err := b.runRounds(cells); err != nil {
		return err
	}
	rows := report(cells, b.progs, b.patterns)
	fmt.Printf("load average %s at the end\n", loadavg())
	if *jsonOut != "" {
		j, err := json.MarshalIndent(map[string]any{
			"kernel": host.Kernel(), "cpu": host.CPUModel(), "cpus": runtime.NumCPU(), "command": os.Args[1:],
			"seconds_per_cell": duration.Seconds(), "rounds": *rounds, "rows": rows,
		}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, append(j, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// checkFlags checks the flags and returns the generator thread counts to measure.
func checkFlags() ([]int, error) {
	if err := parseCPUs(*cpusF); err != nil {
		return nil, err
	}
	threads, err := parseThreads(*threadsF)
	if err != nil {
		return nil, err
	}
	if *size < 54 || *size > 1500 {
		return nil, fmt.Errorf("-size %d: want 54..1500", *size)
	}
	if *repeat == 0 || *repeat > 1<<24 || *batch == 0 || *batch > 256 {
		return nil, errors.New("-repeat 1..16777216 and -batch 1..256")
	}
	if *cycled < 1 || *cycled > 1<<28 {
		return nil, errors.New("-flows 1..268435456")
	}
	if *rounds < 1 || *rounds > 1000 || *duration < time.Duration(*rounds)*100*time.Millisecond || *duration > time.Hour {
		return nil, errors.New("-rounds 1..1000 and -duration at most 1h and at least 100ms per round")
	}
	return threads, nil
}

// cpus are the CPUs of the generator threads: thread i runs on cpus[i].
var cpus []int

func parseCPUs(s string) error {
	if s == "" {
		for i := range runtime.NumCPU() {
			cpus = append(cpus, i)
		}
		return nil
	}
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n >= runtime.NumCPU() || slices.Contains(cpus, n) {
			return fmt.Errorf("-cpus %q: want distinct CPUs 0..%d", s, runtime.NumCPU()-1)
		}
		cpus = append(cpus, n)
	}
	return nil
}

func parseThreads(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > len(cpus) {
			return nil, fmt.Errorf("-threads %q: want numbers 1..%d (one CPU per thread)", s, len(cpus))
		}
		out = append(out, n)
	}
	return out, nil
}
