// Command throughput measures how many packets per second xdp_lb forwards with real XDP on
// veths, in the point-to-point topology of DESIGN.md:
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
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/internal/testbed"
	"github.com/lbdproj/lbd/pkg/consistenthash"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var (
	vip     = netip.MustParseAddr("198.18.0.10")
	flowNet = netip.MustParseAddr("198.19.0.0") // distinct flows: 198.19.0.0/16, port from the counter
)

const hashSeed = 0x6c62640a

// spike LB figures on this machine kind (DESIGN.md, "Throughput"), by generator threads
var spike = map[int]float64{1: 3.4, 2: 7.3}

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

// traffic is what the generator sends.
type traffic struct {
	name  string
	flows uint32 // gen.c: 0 one tuple, ~0 never repeat, else cycle over this many per CPU
	gen   *genObjects
}

// lbProg is a program on the LB's gen-facing veth.
type lbProg struct {
	name string
	prog *ebpf.Program
	isLB bool // xdp_lb: its counters are read
}

// cell is one figure: a program on the LB, a traffic pattern, a number of generator threads.
// Every round visits every cell, so a burst of other work on the machine hits them alike.
type cell struct {
	prog, traffic, threads int
	res                    result
}

type result struct {
	secs, cpuSecs float64   // measured time; CPU time the path used in it
	sink, ipip    uint64    // at the sink
	sent          uint64    // by the generator
	lbTx, lbOther uint64    // xdp_lb verdicts (0 for the floors)
	hit, miss     uint64    // xdp_lb flow-table events
	rounds        []float64 // Mpps of each round
	roundsCore    []float64 // Mpps/core of each round
}

func (r result) mpps() float64 { return float64(r.sink) / r.secs / 1e6 }

// perCore is the rate per second of CPU time the path had: what one core moves when it is
// not shared with other work.
func (r result) perCore() float64 { return float64(r.sink) / max(r.cpuSecs, 1e-9) / 1e6 }

func (r *result) add(o result) {
	r.secs += o.secs
	r.cpuSecs += o.cpuSecs
	r.sink += o.sink
	r.ipip += o.ipip
	r.sent += o.sent
	r.lbTx += o.lbTx
	r.lbOther += o.lbOther
	r.hit += o.hit
	r.miss += o.miss
	r.rounds = append(r.rounds, o.mpps())
	r.roundsCore = append(r.roundsCore, o.perCore())
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
	report(cells, b.progs, b.patterns)
	fmt.Printf("load average %s at the end\n", loadavg())
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

// bench is the topology with every program loaded and attached.
type bench struct {
	t        *topo
	sink     sinkObjects
	patterns []*traffic
	lb       *dataplane.LB
	ringAlg  consistenthash.Algorithm
	xl       link.Link // xdp_lb's XDP link, where the floors take its place
	progs    []lbProg  // xdp_lb first, then the floors
	cur      int       // the one in xl
	closers  []func() error
}

// setUp builds the topology: the sink counting on its veth, a generator per traffic
// pattern, xdp_lb on lb's gen-facing veth and, with -floors, the floors beside it.
func setUp() (_ *bench, err error) {
	t, err := newTopo()
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	b := &bench{t: t}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.close())
		}
	}()
	if err := b.loadSink(); err != nil {
		return nil, err
	}
	if err := b.loadGenerators(); err != nil {
		return nil, err
	}
	if err := b.openLB(); err != nil {
		return nil, err
	}
	if *floors {
		if err := b.loadFloors(); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// close detaches and closes everything, last loaded first, then removes the topology.
func (b *bench) close() error {
	var errs []error
	if b.cur != 0 {
		if err := b.xl.Update(b.progs[0].prog); err != nil {
			errs = append(errs, fmt.Errorf("swap xdp_lb back: %w", err))
		}
	}
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	return errors.Join(append(errs, b.t.close())...)
}

// loadSink attaches the sink's count-and-drop program to its veth.
func (b *bench) loadSink() error {
	if err := loadSinkObjects(&b.sink, nil); err != nil {
		return fmt.Errorf("load sink: %w", err)
	}
	b.closers = append(b.closers, b.sink.Close)
	sl, err := attachXDP(b.t.sink, b.sink.XdpSink, b.t.sinkIfindex)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	b.closers = append(b.closers, sl.Close)
	return nil
}

// loadGenerators loads a generator for each traffic pattern.
func (b *bench) loadGenerators() error {
	b.patterns = []*traffic{
		{name: "same flow (LRU hit)", flows: 0},
		{name: fmt.Sprintf("%d flows/thread cycled", *cycled), flows: uint32(*cycled)},
		{name: "new flow every packet (LRU miss)", flows: ^uint32(0)},
	}
	for _, p := range b.patterns {
		g, err := newGen(b.t.lbInMAC, b.t.genMAC, p.flows)
		if err != nil {
			return err
		}
		p.gen = g
		b.closers = append(b.closers, g.Close)
	}
	return nil
}

// openLB attaches xdp_lb to lb's gen-facing veth, with one VIP whose backends are behind
// the sink-facing one, and takes its XDP link.
func (b *bench) openLB() error {
	err := b.t.lb.Do(func() (err error) {
		b.lb, err = dataplane.OpenLB(dataplane.Config{
			Interface:   b.t.lbIn,
			PinDir:      filepath.Join(b.t.fleet.PinDir, "lbd"),
			HashSeed:    hashSeed,
			EncapSource: lbOut,
			MTU:         lbOutMTU,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("open xdp_lb: %w", err)
	}
	b.closers = append(b.closers, b.lb.Detach)
	if b.ringAlg, err = applyVIP(b.lb, b.t.sinkMAC, b.t.lbOutMAC, b.t.lbOutIfindex); err != nil {
		return err
	}
	// the floors take xdp_lb's place in its own XDP link for their turns
	xl, lbp, err := xdpLinkOf(b.t.lb, b.t.lbIn)
	if err != nil {
		return fmt.Errorf("xdp_lb's link: %w", err)
	}
	b.closers = append(b.closers, lbp.Close, xl.Close)
	b.xl = xl
	b.progs = []lbProg{{"xdp_lb", lbp, true}}
	return nil
}

// loadFloors loads the floors that take xdp_lb's place in turn.
func (b *bench) loadFloors() error {
	fwd, err := newFwd(b.t)
	if err != nil {
		return err
	}
	b.closers = append(b.closers, fwd.Close)
	b.progs = append(b.progs, lbProg{"floor: MAC rewrite + redirect", fwd.XdpFwdFloor, false},
		lbProg{"floor: IPIP push + redirect", fwd.XdpIpipFwdFloor, false})
	return nil
}

// cells lists what to measure: xdp_lb with every traffic pattern, each floor with the
// constant flow, each with every thread count.
func (b *bench) cells(threads []int) []*cell {
	var cells []*cell
	for _, n := range threads {
		for pi := range b.patterns {
			cells = append(cells, &cell{prog: 0, traffic: pi, threads: n})
		}
	}
	for pi := 1; pi < len(b.progs); pi++ {
		for _, n := range threads {
			cells = append(cells, &cell{prog: pi, traffic: 0, threads: n})
		}
	}
	return cells
}

// visitTime is the measured time of one visit to a cell.
func visitTime() time.Duration { return *duration / time.Duration(*rounds) }

func printHeader(b *bench, cells []*cell) {
	visit := visitTime()
	fmt.Printf("xdp_lb forwarding rate: real XDP (driver mode) on veths, gen ─ lb ─ sink (point-to-point, bpf_redirect)\n")
	fmt.Printf("kernel %s, %d CPUs (%s), load average %s at start\n", kernel(), runtime.NumCPU(), cpuModel(), loadavg())
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

// runRounds visits every cell once per round and adds up the results. Round 0 is not
// counted: it fills the flow table, so that round 1 does not see an LRU with free entries
// where the others evict.
func (b *bench) runRounds(cells []*cell) error {
	for round := range *rounds + 1 {
		if round == 0 {
			fmt.Fprintf(os.Stderr, "warm-up round:")
		} else {
			fmt.Fprintf(os.Stderr, "round %d/%d:", round, *rounds)
		}
		d := visitTime()
		if round == 0 {
			d = min(d, 200*time.Millisecond)
		}
		for _, c := range cells {
			r, err := b.visit(c, d)
			if err != nil {
				fmt.Fprintln(os.Stderr)
				return fmt.Errorf("%s, %s, %d threads: %w", b.progs[c.prog].name, b.patterns[c.traffic].name, c.threads, err)
			}
			if round > 0 {
				c.res.add(r)
			}
			fmt.Fprintf(os.Stderr, " %.2f", r.mpps())
		}
		fmt.Fprintln(os.Stderr, " Mpps")
	}
	return nil
}

// visit puts the cell's program in xdp_lb's link and measures its traffic for d.
func (b *bench) visit(c *cell, d time.Duration) (result, error) {
	if c.prog != b.cur {
		if err := b.xl.Update(b.progs[c.prog].prog); err != nil {
			return result{}, fmt.Errorf("swap in %s: %w", b.progs[c.prog].name, err)
		}
		b.cur = c.prog
	}
	return measure(b.t, b.patterns[c.traffic].gen, &b.sink, b.lb, b.progs[c.prog].isLB, c.threads, d)
}

func report(cells []*cell, progs []lbProg, patterns []*traffic) {
	floorOf := map[int]result{}
	for _, c := range cells {
		if progs[c.prog].name == "floor: IPIP push + redirect" {
			floorOf[c.threads] = c.res
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "program\ttraffic\tthreads\tMpps\trounds min/med/max\tlb tx Mpps\tCPU had\tMpps/core\tns/pkt\t× IPIP floor\tat sink\tLRU miss\tspike LB\t\n")
	for _, c := range cells {
		r := c.res
		lbTx, lru, ratio, sp := "-", "-", "-", "-"
		if progs[c.prog].isLB {
			lbTx = fmt.Sprintf("%.2f", float64(r.lbTx)/r.secs/1e6)
			if r.hit+r.miss > 0 {
				lru = fmt.Sprintf("%.1f%%", 100*float64(r.miss)/float64(r.hit+r.miss))
			}
			if v, ok := spike[c.threads]; ok && patterns[c.traffic].flows == 0 {
				sp = fmt.Sprintf("%.1f", v)
			}
		}
		if f, ok := floorOf[c.threads]; ok && len(f.roundsCore) == len(r.roundsCore) {
			// round by round, then the median: the machine's speed drifts between rounds
			// (other work, the host), and a cell and its floor in one round see about the same
			var q []float64
			for i := range r.roundsCore {
				q = append(q, r.roundsCore[i]/f.roundsCore[i])
			}
			ratio = fmt.Sprintf("%.2f", median(q))
		}
		rs := slices.Sorted(slices.Values(r.rounds))
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.2f/%.2f/%.2f\t%s\t%.0f%%\t%.2f\t%.0f\t%s\t%.1f%%\t%s\t%s\t\n", progs[c.prog].name, patterns[c.traffic].name,
			c.threads, r.mpps(), rs[0], median(rs), rs[len(rs)-1], lbTx, 100*r.cpuSecs/(float64(c.threads)*r.secs), r.perCore(),
			1e3/r.perCore(), ratio, 100*float64(r.sink)/float64(max(r.sent, 1)), lru, sp)
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
	fmt.Println("spike LB: DESIGN.md's figure for a spike LB on this machine kind, same topology and generator (its traffic is not recorded)")
	for _, c := range cells {
		r := c.res
		if progs[c.prog].isLB && (r.ipip != r.sink || r.lbOther > 0 || r.lbTx+r.lbTx/100 < r.sink) {
			fmt.Printf("check: %s, %s, %d threads: sink %d (IPIP %d), lb tx %d, other verdicts %d\n",
				progs[c.prog].name, patterns[c.traffic].name, c.threads, r.sink, r.ipip, r.lbTx, r.lbOther)
		}
	}
}

// measure runs n generator threads with g for the warm-up plus d and counts.
func measure(t *topo, g *genObjects, sink *sinkObjects, lb *dataplane.LB, isLB bool, n int, d time.Duration) (result, error) {
	gs := startGenerators(t, g, n, *warmup+d)
	defer gs.halt()
	if err := sleep(*warmup, gs.failed); err != nil {
		return result{}, err
	}
	cpuPaths := gs.cpuPaths()
	read := func() (counters, error) { return readCounters(cpuPaths, sink, g, lb, isLB) }
	c0, err := read()
	if err != nil {
		return result{}, err
	}
	if err := sleep(d, gs.failed); err != nil {
		return result{}, err
	}
	c1, err := read()
	if err != nil {
		return result{}, err
	}
	r := c1.since(c0, isLB)
	gs.halt()
	if err := gs.failed(); err != nil {
		return result{}, err
	}
	if r.sink == 0 {
		return r, fmt.Errorf("nothing reached the sink (the generator sent %d)", r.sent)
	}
	return r, nil
}

// generators are generator threads at work, thread i on cpus[i].
type generators struct {
	n    int
	stop atomic.Bool
	wg   sync.WaitGroup
	err  atomic.Pointer[error] // the first generator's failure
	tids chan int
}

// startGenerators starts n generator threads with g; they stop when halted, or by
// themselves 10 s after d.
func startGenerators(t *topo, g *genObjects, n int, d time.Duration) *generators {
	gs := &generators{n: n, tids: make(chan int, n)}
	limit := time.Now().Add(d + 10*time.Second)
	for i := range n {
		gs.wg.Go(func() {
			if err := generate(t, g.XdpGen, cpus[i], &gs.stop, limit, gs.tids); err != nil {
				gs.err.CompareAndSwap(nil, &err)
			}
		})
	}
	return gs
}

// halt stops the threads and waits for them; calling it again does nothing more.
func (gs *generators) halt() {
	gs.stop.Store(true)
	gs.wg.Wait()
}

// failed says why to stop measuring: an interrupt, or a generator's error.
func (gs *generators) failed() error {
	if interrupted.Load() {
		return errInterrupted
	}
	if e := gs.err.Load(); e != nil {
		return *e
	}
	return nil
}

// cpuPaths are the schedstat files of the CPU time the path uses: the generator threads
// (the LB's and the sink's XDP run in their softirq context) and ksoftirqd on their CPUs
// (where softirq work spills over). It waits for every thread to say its ID.
func (gs *generators) cpuPaths() []string {
	var paths []string
	for i := range gs.n {
		paths = append(paths, fmt.Sprintf("/proc/self/task/%d/schedstat", <-gs.tids))
		if p, ok := ksoftirqd[cpus[i]]; ok {
			paths = append(paths, p)
		}
	}
	return paths
}

// counters are what measure reads at the start and the end of a measurement.
type counters struct {
	at          time.Time
	cpu         time.Duration
	sink        sinkSinkCount
	sent        uint64
	st          dataplane.Stats
	tx, verdict uint64
}

// readCounters reads the CPU time in cpuPaths, the sink's and the generator's counts, and
// with isLB xdp_lb's verdicts and flow-table events.
func readCounters(cpuPaths []string, sink *sinkObjects, g *genObjects, lb *dataplane.LB, isLB bool) (c counters, err error) {
	c.at = time.Now()
	for _, p := range cpuPaths {
		d, err := schedRuntime(p)
		if err != nil {
			return c, err
		}
		c.cpu += d
	}
	if c.sink, err = sinkTotal(sink); err != nil {
		return c, err
	}
	if c.sent, err = percpuSum(g.GenSent); err != nil {
		return c, err
	}
	if isLB {
		if c.st, err = lb.Stats(); err != nil {
			return c, err
		}
		c.tx = c.st.Verdicts["tx"].Packets
		for _, v := range c.st.Verdicts {
			c.verdict += v.Packets
		}
	}
	return c, nil
}

// since is the result of the time from c0 to c.
func (c counters) since(c0 counters, isLB bool) result {
	r := result{
		secs:    c.at.Sub(c0.at).Seconds(),
		cpuSecs: (c.cpu - c0.cpu).Seconds(),
		sink:    c.sink.Packets - c0.sink.Packets,
		ipip:    c.sink.Ipip - c0.sink.Ipip,
		sent:    c.sent - c0.sent,
	}
	if isLB {
		r.lbTx = c.tx - c0.tx
		r.lbOther = (c.verdict - c0.verdict) - r.lbTx
		r.hit = c.st.Events["lru_hit"] - c0.st.Events["lru_hit"]
		r.miss = c.st.Events["lru_miss"] - c0.st.Events["lru_miss"]
	}
	return r
}

// sleep waits for d, checking failed every 50 ms.
func sleep(d time.Duration, failed func() error) error {
	end := time.Now().Add(d)
	for {
		if err := failed(); err != nil {
			return err
		}
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		time.Sleep(min(left, 50*time.Millisecond))
	}
}

// xdpMd is struct xdp_md as BPF_PROG_TEST_RUN takes it: data 0 and data_end the frame's
// length, ingress_ifindex the device whose XDP_TX sends the frame.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// generate sends frames from gen's veth on one thread pinned to cpu until stop or limit.
// The thread is never unlocked: it is in gen's namespace and pinned, and dies with the
// goroutine (testbed's Host.Do would hand it back to the runtime).
func generate(t *topo, prog *ebpf.Program, cpu int, stop *atomic.Bool, limit time.Time, tids chan<- int) error {
	runtime.LockOSThread()
	tids <- unix.Gettid()
	ns, err := netns.GetFromName(t.gen.NS)
	if err != nil {
		return fmt.Errorf("open %s: %w", t.gen.NS, err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("enter %s: %w", t.gen.NS, err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	if *nice != 0 { // this thread only (Linux: a tid is a pid here)
		if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), *nice); err != nil {
			return fmt.Errorf("nice %d: %w", *nice, err)
		}
	}
	frame := make([]byte, *size) // gen.c writes every header of every frame
	opts := &ebpf.RunOptions{
		Data:      frame,
		Repeat:    uint32(*repeat),
		Flags:     unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		BatchSize: uint32(*batch),
		Context:   xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(t.genIfindex)},
	}
	const maxCalls = 10_000_000 // a bound far above what the time limit allows
	for calls := 0; calls < maxCalls && !stop.Load() && time.Now().Before(limit); calls++ {
		if _, err := prog.Run(opts); err != nil {
			return fmt.Errorf("generator on CPU %d: %w", cpu, err)
		}
	}
	return nil
}

// newGen loads the generator: frames from src to dst (MACs), flows as in gen.c.
func newGen(dst, src net.HardwareAddr, flows uint32) (*genObjects, error) {
	spec, err := loadGen()
	if err != nil {
		return nil, err
	}
	if err := setVars(spec, map[string]any{
		"dst_mac":  [6]byte(dst),
		"src_mac":  [6]byte(src),
		"src_ip":   be32(client),
		"flow_net": be32(flowNet),
		"dst_ip":   be32(vip),
		"dst_port": uint16(80),
		"flows":    flows,
	}); err != nil {
		return nil, fmt.Errorf("gen: %w", err)
	}
	var g genObjects
	if err := spec.LoadAndAssign(&g, nil); err != nil {
		return nil, fmt.Errorf("load gen: %w", err)
	}
	return &g, nil
}

func newFwd(t *topo) (*fwdObjects, error) {
	spec, err := loadFwd()
	if err != nil {
		return nil, err
	}
	if err := setVars(spec, map[string]any{
		"dst_mac":     [6]byte(t.sinkMAC),
		"src_mac":     [6]byte(t.lbOutMAC),
		"out_ifindex": uint32(t.lbOutIfindex),
		"encap_src":   be32(lbOut),
		"encap_dst":   be32(backend0),
	}); err != nil {
		return nil, fmt.Errorf("fwd: %w", err)
	}
	var f fwdObjects
	if err := spec.LoadAndAssign(&f, nil); err != nil {
		return nil, fmt.Errorf("load fwd: %w", err)
	}
	return &f, nil
}

func setVars(spec *ebpf.CollectionSpec, vars map[string]any) error {
	for name, v := range vars {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("no variable %q", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// be32 is an IPv4 address as a host-order number (the programs convert it).
func be32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// attachXDP attaches prog in driver mode to ifindex in h's namespace.
func attachXDP(h *testbed.Host, prog *ebpf.Program, ifindex int) (link.Link, error) {
	var l link.Link
	err := h.Do(func() (err error) {
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		return err
	})
	return l, err
}

// applyVIP serves 198.18.0.10:80/tcp from backends whose next hop is the sink, and returns
// the ring's algorithm.
func applyVIP(lb *dataplane.LB, dst, src net.HardwareAddr, ifindex int) (consistenthash.Algorithm, error) {
	var members []consistenthash.Member
	var bes []dataplane.Backend
	b := backend0.As4()
	for i := range *nBE {
		a := netip.AddrFrom4([4]byte{b[0], b[1], b[2], b[3] + byte(i)})
		members = append(members, consistenthash.Member{Key: a.String(), Weight: 1})
		bes = append(bes, dataplane.Backend{Addr: a, DstMAC: dst, SrcMAC: src, Ifindex: ifindex})
	}
	alg := consistenthash.DefaultAlgorithm
	ring, err := consistenthash.Build(alg, members, consistenthash.DefaultSize)
	if err != nil {
		return alg, err
	}
	return alg, lb.Apply([]dataplane.VIP{{Key: dataplane.VIPKey{Addr: vip, Port: 80, Proto: 6}, Backends: bes, Ring: ring}})
}

func sinkTotal(s *sinkObjects) (sinkSinkCount, error) {
	var per []sinkSinkCount
	var out sinkSinkCount
	if err := s.SinkCounts.Lookup(uint32(0), &per); err != nil {
		return out, err
	}
	for _, c := range per {
		out.Packets += c.Packets
		out.Ipip += c.Ipip
		out.Bytes += c.Bytes
	}
	return out, nil
}

func percpuSum(m *ebpf.Map) (uint64, error) {
	var per []uint64
	if err := m.Lookup(uint32(0), &per); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
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

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// xdpLinkOf finds the XDP link on the named interface of h and the program attached to it.
func xdpLinkOf(h *testbed.Host, ifname string) (link.Link, *ebpf.Program, error) {
	nh, err := h.Netlink()
	if err != nil {
		return nil, nil, err
	}
	defer nh.Close()
	l, err := nh.LinkByName(ifname)
	if err != nil {
		return nil, nil, err
	}
	if l.Attrs().Xdp == nil || l.Attrs().Xdp.ProgId == 0 {
		return nil, nil, fmt.Errorf("no XDP program on %s", ifname)
	}
	id := ebpf.ProgramID(l.Attrs().Xdp.ProgId)
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return nil, nil, err
	}
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err == nil && info.Type == link.XDPType && info.Program == id {
			return it.Take(), prog, nil
		}
	}
	prog.Close()
	return nil, nil, errors.Join(fmt.Errorf("no XDP link runs program %d", id), it.Err())
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

// ksoftirqd maps a CPU to its ksoftirqd's schedstat file.
var ksoftirqd = func() map[int]string {
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		if c, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "ksoftirqd/"); ok {
			if cpu, err := strconv.Atoi(c); err == nil {
				out[cpu] = filepath.Join("/proc", e.Name(), "schedstat")
			}
		}
	}
	return out
}()

// schedRuntime is the time a task has run on a CPU (/proc/…/schedstat, first field). With
// this kernel's configuration (no IRQ time accounting) that includes softirq work done in
// the task's context.
func schedRuntime(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0, fmt.Errorf("%s: %q", path, b)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	return time.Duration(ns), err
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
