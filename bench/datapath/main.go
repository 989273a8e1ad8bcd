// Command datapath measures xdp_lb's cost per packet with BPF_PROG_TEST_RUN, beside floors
// measured the same way in the same run, by one or both of two methods:
//
//   - wrap (the default): BPF_PROG_TEST_RUN with Repeat, -repeat runs per call, of a wrapper
//     (bench/bpf/wrap.c) that restores the frame before each run and tail-calls the program
//     under test. The kernel reads its clock twice per call, so that cost is spread over
//     the runs. The wrapper costs something too: it is measured as a floor of its own (the
//     wrapper tail-calling a bare XDP_PASS program) and subtracted, giving "net".
//   - call: one packet per call (Repeat 1), the kernel's time for that run. Each figure
//     holds the call's fixed costs: two clock reads, the bottom-half toggling around the
//     run, the indirect call into the program, and caches and branch predictors that the
//     system call itself disturbed.
//
// Every figure printed is measured in the run; ratios are to floors of the same run and
// method. See README.md, "Benchmarks".
//
//	go run ./bench/datapath [-method wrap|call|both] [-rounds 20] [-cpu N] [-json FILE]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lbdproj/lbd/bench/internal/host"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/config"
)

var (
	vip    = netip.MustParseAddr("198.18.0.10")
	client = netip.MustParseAddr("198.18.1.1")
	other  = netip.MustParseAddr("198.18.0.99")
	// the miss scenario's flows: the address's low 16 bits and the port vary; the call
	// method's come from this /16, the wrapper's from the client's, so neither method hits
	// the other's flows
	missCall = netip.MustParseAddr("198.19.1.1")
)

var (
	methodF  = flag.String("method", "wrap", "wrap (Repeat through a restoring wrapper), call (one packet per call) or both")
	rounds   = flag.Int("rounds", 20, "rounds; every scenario runs in every round, interleaved")
	perRound = flag.Int("per-round", 500, "call method: packets (calls) per scenario per round")
	calls    = flag.Int("calls", 3, "wrap method: calls per scenario per round")
	repeat   = flag.Int("repeat", 5000, "wrap method: runs per call (a call with Repeat > 1 also costs ~20 ms: the kernel puts the program in the XDP dispatcher and takes it out)")
	nBE      = flag.Int("backends", 10, "backends behind the VIP")
	cpu      = flag.Int("cpu", runtime.NumCPU()-1, "the CPU to pin the measuring thread to; -1: not pinned")
	jsonOut  = flag.String("json", "", "also write the results to this file as JSON")
)

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "datapath: needs root to load BPF programs")
		os.Exit(1)
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "datapath: %+v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var methods []string
	switch *methodF {
	case "wrap", "call":
		methods = []string{*methodF}
	case "both":
		methods = []string{"call", "wrap"}
	default:
		return fmt.Errorf("-method %q: want wrap, call or both", *methodF)
	}
	if *rounds < 1 || *perRound < 1 || *calls < 1 || *repeat < 1 || *repeat > 1<<20 {
		return fmt.Errorf("-rounds, -per-round, -calls and -repeat must be positive (-repeat at most %d)", 1<<20)
	}
	if *nBE < 1 || *nBE > 200 {
		return fmt.Errorf("-backends %d: want 1..200", *nBE)
	}
	// one thread, pinned: the per-CPU maps and the caches stay on one core
	runtime.LockOSThread()
	if *cpu >= 0 {
		var set unix.CPUSet
		set.Set(*cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", *cpu, err)
		}
	}

	b, err := newBench()
	if err != nil {
		return err
	}
	defer b.close()
	if err := b.checkPaths(); err != nil {
		return err
	}
	res := Results{
		Kernel: host.Kernel(), CPU: host.CPUModel(), CPUs: runtime.NumCPU(), PinnedCPU: *cpu,
		Backends: *nBE, Rounds: *rounds, BPFStats: bpfStatsOn(),
		Programs: b.programs(),
		Paths:    paths,
	}
	printHeader(res)
	for _, m := range methods {
		start := time.Now()
		var mr MethodResult
		switch m {
		case "call":
			mr, err = b.measureCall()
		case "wrap":
			mr, err = b.measureWrap()
		}
		if err != nil {
			return fmt.Errorf("%s method: %w", m, err)
		}
		mr.Seconds = time.Since(start).Seconds()
		res.Methods = append(res.Methods, mr)
		printMethod(mr)
	}
	if len(res.Methods) == 2 {
		printComparison(res.Methods[0], res.Methods[1])
	}
	printPaths(res)
	if *jsonOut != "" {
		j, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, append(j, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// lbConfig is xdp_lb as the daemon loads it, but with the SYN flood guard off: with it on,
// SYNs at the benchmark's rate would all go the guard's way, and the SYN row would not be
// the recording path.
func lbConfig() dataplane.Config {
	return dataplane.Config{
		HashSeed:      config.DefaultHashSeed,
		EncapSource:   netip.MustParseAddr("198.18.0.2"),
		MTU:           1600,
		FlowTableSize: config.DefaultFlowTableSize,
	}
}

// bpfStatsOn says whether kernel.bpf_stats_enabled is on: then every program run also
// reads the clock twice for the program's run_time_ns, which the figures would include.
func bpfStatsOn() bool {
	b, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	return err == nil && len(b) > 0 && b[0] == '1'
}
