package health

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"
)

// The scale run (issue 4, part 6): N TCP targets at a 1s interval against
// loopback listeners, each target its own address 127.77.x.y:9000.
//
//	go test -run XXX -bench BenchmarkScale -benchtime 1x ./pkg/health
//	LBD_HEALTH_SCALE=1 go test -run TestScale -v ./pkg/health     # asserts it keeps up
//
// LBD_HEALTH_SCALE_TARGETS (10000) and LBD_HEALTH_SCALE_SECONDS (10) change the size.
// LBD_HEALTH_SCALE_DEAD=1 makes every backend unresponsive instead: its listener
// never accepts and has no backlog, so after the first connection the SYNs go
// unanswered and every probe runs into its 500ms timeout (the worst case for
// probes in flight: 10,000 × 0.5s = 5,000 at once).
// The listeners live in a child process (this test binary re-executed) so that
// getrusage of this process measures the checker alone.

const (
	scaleChildEnv = "LBD_HEALTH_SCALE_CHILD" // set: be the listener process for N targets
	scalePort     = 9000
	scaleWarmup   = 2 * time.Second // first interval: phases spreading, listeners warming
	scaleDeadEnv  = "LBD_HEALTH_SCALE_DEAD"
)

func TestMain(m *testing.M) {
	if n := os.Getenv(scaleChildEnv); n != "" {
		os.Exit(scaleListenerChild(n))
	}
	os.Exit(m.Run())
}

// scaleAddr is the i-th target's address: 127.77.0.1, …, 127.77.0.250, 127.77.1.1, …
// All of 127.0.0.0/8 routes to lo, so none needs configuring.
func scaleAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 77, byte(i / 250), byte(i%250 + 1)}), scalePort)
}

// scaleListenerChild listens on n addresses and, once a second, accepts and
// closes whatever connected. The listeners are plain non-blocking sockets swept
// in a loop rather than n goroutines on the runtime's poller: they stand in for
// n backends, which in production are other machines, so they should take as
// little of this machine's CPU as they can. The kernel completes the handshake
// without them; the backlog holds a second of connections.
func scaleListenerChild(arg string) int {
	n, err := strconv.Atoi(arg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	dead := os.Getenv(scaleDeadEnv) != ""
	backlog := 1024
	if dead {
		backlog = 0 // room for one connection, never accepted: later SYNs are dropped
	}
	fds := make([]int, n)
	for i := range fds {
		a := scaleAddr(i)
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		}
		if err == nil {
			err = unix.Bind(fd, &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()})
		}
		if err == nil {
			err = unix.Listen(fd, backlog)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "listen %v: %v\n", a, err)
			return 1
		}
		fds[i] = fd
	}
	go func() {
		for range time.Tick(time.Second) {
			if dead {
				continue
			}
			for _, fd := range fds {
				for {
					c, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
					if err != nil {
						break // EAGAIN: drained
					}
					unix.Close(c)
				}
			}
		}
	}()
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

type scaleResult struct {
	targets      int
	window       time.Duration // measured, after the warm-up
	probes       float64       // completed in the window
	failures     float64       // of which timeouts:
	timeouts     float64
	perSecond    float64
	lag          lagBuckets // over the window
	cpu          float64    // cores used by this process (the checker), user+sys
	sysCPU       float64    // of which in the kernel
	listenerCPU  float64    // cores used by the listener process
	machineBusy  float64    // cores busy on the whole machine, everyone included
	goroutines   int
	maxRSSMiB    float64
	lateFraction float64        // probes that started > 100ms after their scheduled time
	lastErrs     map[string]int // targets whose last probe failed, by error
	lateEach     []uint64       // probes started >100ms late, each second of the window
}

func (r scaleResult) String() string {
	return fmt.Sprintf("%d targets @1s, %v window: %.0f probes/s (want %d), %.0f failed (%.0f timeouts), "+
		"started >100ms late %.3f%% (>10ms %.2f%%, >25ms %.2f%%); "+
		"checker CPU %.2f cores (%.0f%% sys, %.1fµs/probe), listener CPU %.2f, everything else %.2f (machine busy %.2f of %d); "+
		"%d goroutines at the end, max RSS %.0f MiB, last errors %v, late each second %v",
		r.targets, r.window.Round(time.Millisecond), r.perSecond, r.targets, r.failures, r.timeouts,
		100*r.lateFraction, 100*r.lag.fractionOver(0.01), 100*r.lag.fractionOver(0.025),
		r.cpu, 100*r.sysCPU/r.cpu, 1e6*r.cpu/r.perSecond, r.listenerCPU, r.machineBusy-r.cpu-r.listenerCPU,
		r.machineBusy, runtime.NumCPU(), r.goroutines, r.maxRSSMiB, r.lastErrs, r.lateEach)
}

func scaleEnv(tb testing.TB, name string, def int) int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func runScale(tb testing.TB) scaleResult {
	tb.Helper()
	n := scaleEnv(tb, "LBD_HEALTH_SCALE_TARGETS", 10000)
	window := time.Duration(scaleEnv(tb, "LBD_HEALTH_SCALE_SECONDS", 10)) * time.Second

	child := startListeners(tb, n)
	reg := prometheus.NewPedanticRegistry()
	c := newTestChecker(tb, reg)
	targets := make([]Target, n)
	for i := range targets {
		a := scaleAddr(i)
		targets[i] = Target{
			Key:  Key{VIP: "198.18.0.10:80/tcp", Backend: a.Addr(), Port: a.Port()},
			Addr: a,
			Spec: Spec{Type: TypeTCP, Interval: time.Second, Timeout: 500 * time.Millisecond},
		}
	}
	c.Set(targets)
	stop := mustRun(tb, c)

	time.Sleep(scaleWarmup) // not synchronisation: the warm-up is excluded from the figures
	s0 := takeSample(tb, reg, child)
	// Once a second, the probes started late in that second: a stall shows as
	// a spike, a checker that cannot keep up as a floor.
	var lateEach []uint64
	prev := s0
	for range int(window / time.Second) {
		time.Sleep(time.Second) // pacing, not synchronisation: one sample per second of the window
		s := takeSample(tb, reg, child)
		d := s.lag.minus(prev.lag)
		lateEach = append(lateEach, uint64(math.Round(d.fractionOver(0.1)*float64(d.total))))
		prev = s
	}
	s1 := prev
	goroutines := runtime.NumGoroutine()
	stop()
	errs := map[string]int{}
	for _, st := range c.States() {
		if st.LastErr != "" {
			// "dial tcp 127.77.1.2:9000: i/o timeout" → "dial tcp: i/o timeout"
			msg := st.LastErr
			if i, j := strings.Index(msg, " 127."), strings.LastIndex(msg, ": "); i >= 0 && j > i {
				msg = msg[:i] + msg[j:]
			}
			errs[msg]++
		}
	}

	wall := s1.at.Sub(s0.at).Seconds()
	r := scaleResult{
		targets:     n,
		window:      s1.at.Sub(s0.at),
		probes:      s1.probes - s0.probes,
		failures:    s1.failures - s0.failures,
		timeouts:    s1.timeouts - s0.timeouts,
		lag:         s1.lag.minus(s0.lag),
		cpu:         (s1.cpu - s0.cpu).Seconds() / wall,
		sysCPU:      (s1.sysCPU - s0.sysCPU).Seconds() / wall,
		listenerCPU: (s1.childCPU - s0.childCPU).Seconds() / wall,
		machineBusy: (s1.machineBusy - s0.machineBusy) / wall,
		goroutines:  goroutines,
		maxRSSMiB:   float64(s1.maxRSS) / 1024,
		lastErrs:    errs,
		lateEach:    lateEach,
	}
	r.perSecond = r.probes / wall
	r.lateFraction = r.lag.fractionOver(0.1)
	return r
}

// startListeners runs this test binary as the listener process and waits until it listens.
func startListeners(tb testing.TB, n int) (pid int) {
	tb.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), scaleChildEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close() // the child exits on EOF
		if err := cmd.Wait(); err != nil {
			tb.Errorf("listener process: %v", err)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		tb.Fatalf("listener process: %q, %v", line, err)
	}
	return cmd.Process.Pid
}

type sample struct {
	at               time.Time
	probes, failures float64
	timeouts         float64
	lag              lagBuckets
	cpu, childCPU    time.Duration
	sysCPU           time.Duration
	machineBusy      float64 // cores × seconds since boot
	maxRSS           int64   // KiB
}

func takeSample(tb testing.TB, reg prometheus.Gatherer, child int) sample {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	s := sample{
		at:          time.Now(),
		cpu:         time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		sysCPU:      time.Duration(ru.Stime.Nano()),
		childCPU:    procCPU(tb, child),
		machineBusy: machineBusy(tb),
		maxRSS:      ru.Maxrss,
	}
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "lbd_health_probes_total":
			for _, m := range mf.GetMetric() {
				s.probes += m.GetCounter().GetValue()
				if !hasLabel(m, "result", resultSuccess) {
					s.failures += m.GetCounter().GetValue()
				}
				if hasLabel(m, "result", resultTimeout) {
					s.timeouts += m.GetCounter().GetValue()
				}
			}
		case "lbd_health_probe_lag_seconds":
			s.lag = bucketsOf(mf.GetMetric()[0].GetHistogram())
		}
	}
	return s
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// lagBuckets is a cumulative histogram: count at or below each upper bound, and the total.
type lagBuckets struct {
	le    []float64
	count []uint64
	total uint64
}

func bucketsOf(h *dto.Histogram) lagBuckets {
	var b lagBuckets
	for _, bk := range h.GetBucket() {
		b.le = append(b.le, bk.GetUpperBound())
		b.count = append(b.count, bk.GetCumulativeCount())
	}
	b.total = h.GetSampleCount()
	return b
}

func (b lagBuckets) minus(o lagBuckets) lagBuckets {
	d := lagBuckets{le: b.le, count: make([]uint64, len(b.count)), total: b.total - o.total}
	for i := range b.count {
		d.count[i] = b.count[i] - o.count[i]
	}
	return d
}

// fractionOver is the fraction of samples above bound, which must be a bucket bound.
func (b lagBuckets) fractionOver(bound float64) float64 {
	for i, le := range b.le {
		if math.Abs(le-bound) < 1e-9 && b.total > 0 {
			return float64(b.total-b.count[i]) / float64(b.total)
		}
	}
	return math.NaN()
}

// procCPU is a process's user+system time from /proc/pid/stat.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the parenthesised command: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// machineBusy is the non-idle CPU time of the whole machine from /proc/stat, in seconds.
func machineBusy(tb testing.TB) float64 {
	tb.Helper()
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(raw), "\n", 2)[0]) // cpu user nice system idle iowait irq softirq steal
	var busy uint64
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i != 3 && i != 4 && i < 8 { // not idle, not iowait, not guest (already in user)
			busy += n
		}
	}
	return float64(busy) / 100
}

func BenchmarkScale(b *testing.B) {
	for range b.N {
		r := runScale(b)
		b.Log(r)
		b.ReportMetric(r.perSecond, "probes/s")
		b.ReportMetric(r.lateFraction, "late-frac")
		b.ReportMetric(r.cpu, "cpu-cores")
		b.ReportMetric(r.listenerCPU, "listener-cores")
	}
}

// TestScale asserts the checker keeps up: at least 99% of the scheduled probe
// rate completed, under 1% of probes late by more than 100ms, no failures.
func TestScale(t *testing.T) {
	if os.Getenv("LBD_HEALTH_SCALE") == "" {
		t.Skip("set LBD_HEALTH_SCALE=1 to run the 10,000-target scale test (~15s)")
	}
	r := runScale(t)
	t.Log(r)
	if r.perSecond < 0.99*float64(r.targets) {
		t.Errorf("%.0f probes/s, want at least 99%% of %d", r.perSecond, r.targets)
	}
	if r.lateFraction > 0.01 {
		t.Errorf("%.2f%% of probes started more than 100ms late, want under 1%%", 100*r.lateFraction)
	}
	if os.Getenv(scaleDeadEnv) != "" {
		return // every probe is meant to fail
	}
	if r.failures > 0 {
		t.Errorf("%.0f probes failed against listeners that are up", r.failures)
	}
}
