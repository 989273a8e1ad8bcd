package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

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
