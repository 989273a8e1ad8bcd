package health

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCheckerTCPUpDown(t *testing.T) {
	ln := tcpServer(t)
	c := newTestChecker(t, nil)
	tg := target(t, ln.Addr().String(), fast(TypeTCP))
	c.Set([]Target{tg})
	if st := c.States()[tg.Key]; st.Status != StatusUnknown || !st.Up {
		t.Fatalf("new target: %+v, want unknown and served", st)
	}
	mustRun(t, c)
	waitStatus(t, c, tg.Key, StatusUp)
	ln.Close()
	st := waitStatus(t, c, tg.Key, StatusDown)
	if st.Up || st.Consecutive < 2 || !strings.Contains(st.LastErr, "refused") {
		t.Errorf("down state: %+v, want not up, ≥2 consecutive failures, connection refused", st)
	}
}

func TestCheckerHTTPUpDownUp(t *testing.T) {
	for _, typ := range []string{TypeHTTP, TypeHTTPS} {
		t.Run(typ, func(t *testing.T) {
			b := newHTTPBackend()
			srv := newServer(typ, b)
			defer srv.Close()
			addr := strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://")
			spec := fast(typ)
			spec.Interval, spec.Timeout = 250*time.Millisecond, 250*time.Millisecond
			spec.Path, spec.ExpectBody = "/healthz", "ok"
			tg := target(t, addr, spec)

			c := newTestChecker(t, nil)
			c.Set([]Target{tg})
			mustRun(t, c)
			waitStatus(t, c, tg.Key, StatusUp)

			b.status.Store(503)
			st := waitStatus(t, c, tg.Key, StatusDown)
			if !strings.Contains(st.LastErr, "status 503") {
				t.Errorf("LastErr %q, want the status", st.LastErr)
			}
			b.status.Store(200)
			st = waitStatus(t, c, tg.Key, StatusUp)
			if st.Consecutive < 2 || st.LastErr != "" {
				t.Errorf("back up: %+v, want rise=2 successes and no error", st)
			}
			b.body.Store("degraded")
			st = waitStatus(t, c, tg.Key, StatusDown)
			if !strings.Contains(st.LastErr, "body") {
				t.Errorf("LastErr %q, want a body mismatch", st.LastErr)
			}
		})
	}
}

func TestCheckerUDPUpDown(t *testing.T) {
	var silent atomic.Bool
	pc := udpServer(t, &silent)
	spec := fast(TypeUDP)
	spec.Payload, spec.ExpectReply = []byte("ping"), []byte("pong:ping")
	tg := target(t, pc.LocalAddr().String(), spec)

	c := newTestChecker(t, nil)
	c.Set([]Target{tg})
	mustRun(t, c)
	waitStatus(t, c, tg.Key, StatusUp)
	silent.Store(true)
	st := waitStatus(t, c, tg.Key, StatusDown)
	if !strings.Contains(st.LastErr, "timeout") {
		t.Errorf("LastErr %q, want a timeout", st.LastErr)
	}
	silent.Store(false)
	waitStatus(t, c, tg.Key, StatusUp)
}

func TestCheckerOnChange(t *testing.T) {
	ln := tcpServer(t)
	tg := target(t, ln.Addr().String(), fast(TypeTCP))
	var (
		mu   sync.Mutex
		seen []Status
	)
	c := NewChecker(Options{Logger: newTestChecker(t, nil).log, OnChange: func(k Key, st State) {
		if k != tg.Key || st.Up != st.Status.Up() {
			t.Errorf("OnChange(%v, %+v)", k, st)
		}
		mu.Lock()
		seen = append(seen, st.Status)
		mu.Unlock()
	}})
	c.Set([]Target{tg})
	mustRun(t, c)
	waitStatus(t, c, tg.Key, StatusUp)
	ln.Close()
	// OnChange runs just after the state is stored: wait for it, not for the state.
	waitFor(t, 5*time.Second, "two OnChange calls", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) >= 2 })
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != StatusUp || seen[1] != StatusDown {
		t.Errorf("OnChange saw %v, want [up down]", seen)
	}
}

func TestSetReconciles(t *testing.T) {
	lnA, lnB := tcpServer(t), tcpServer(t)
	a := target(t, lnA.Addr().String(), fast(TypeTCP))
	b := target(t, lnB.Addr().String(), fast(TypeTCP))
	var downAfter atomic.Int64 // Consecutive when a went down
	c := newTestChecker(t, nil)
	c.onChange = func(k Key, st State) {
		if k == a.Key && st.Status == StatusDown {
			downAfter.Store(int64(st.Consecutive))
		}
	}
	c.Set([]Target{a, b})
	mustRun(t, c)
	upA := waitStatus(t, c, a.Key, StatusUp)
	waitStatus(t, c, b.Key, StatusUp)

	// Unchanged: same state, probing carries on.
	c.Set([]Target{a, b})
	waitFor(t, 5*time.Second, "more probes of a", func() bool { return c.States()[a.Key].Probes > upA.Probes+2 })
	if st := c.States()[a.Key]; st.Status != StatusUp || !st.Since.Equal(upA.Since) {
		t.Errorf("unchanged target lost its state: %+v, was %+v", st, upA)
	}

	// Changed spec, b removed: a keeps its state and is probed with the new spec.
	a2 := a
	a2.Spec.Rise, a2.Spec.Fall = 1, 1
	before := c.States()[a.Key]
	c.Set([]Target{a2})
	st := c.States()[a.Key]
	if st.Status != StatusUp || !st.Since.Equal(upA.Since) || st.Probes != before.Probes {
		t.Errorf("changed target lost its state: %+v, was %+v", st, before)
	}
	if _, ok := c.States()[b.Key]; ok {
		t.Error("removed target still has a state")
	}
	lnA.Close()
	// fall 1: one failure is enough now.
	waitFor(t, 5*time.Second, "a down", func() bool { return downAfter.Load() != 0 })
	if n := downAfter.Load(); n != 1 {
		t.Errorf("with fall 1 went down after %d failures", n)
	}

	// A type change to none: never probed, served.
	a3 := a2
	a3.Spec = Spec{Type: TypeNone}
	c.Set([]Target{a3})
	if st := c.States()[a.Key]; st.Status != StatusUp || st.LastErr != "" {
		t.Errorf("type none: %+v, want up", st)
	}

	// An invalid spec is held down with the reason.
	a4 := a2
	a4.Spec.Type = "icmp"
	c.Set([]Target{a4})
	if st := c.States()[a.Key]; st.Status != StatusDown || !strings.Contains(st.LastErr, "icmp") {
		t.Errorf("invalid spec: %+v, want down with the error", st)
	}
}

// TestRunStops checks that cancelling Run ends every goroutine the checker
// started, including a probe stuck on a backend that never answers.
func TestRunStops(t *testing.T) {
	hang := tcpHang(t)
	ln := tcpServer(t)
	var silent atomic.Bool
	silent.Store(true)
	pc := udpServer(t, &silent)
	base := runtime.NumGoroutine()

	c := newTestChecker(t, prometheus.NewPedanticRegistry())
	c.phase = func(time.Duration) time.Duration { return 0 }
	slow := Spec{Type: TypeHTTP, Interval: time.Minute, Timeout: time.Minute}
	udp := slow
	udp.Type = TypeUDP
	targets := []Target{target(t, hang.Addr().String(), slow), target(t, pc.LocalAddr().String(), udp)}
	for i := range 50 {
		tg := target(t, ln.Addr().String(), fast(TypeTCP))
		tg.Key.Port = uint16(i) // many keys, one listener
		targets = append(targets, tg)
	}
	c.Set(targets)
	stop := mustRun(t, c)
	waitFor(t, 5*time.Second, "probes in flight and under way", func() bool {
		st := c.States()
		return len(c.slots) >= 2 && st[targets[2].Key].Probes > 0
	})
	if n := runtime.NumGoroutine(); n < base+3 {
		t.Fatalf("%d goroutines while running, base %d: expected Run and two hung probes", n, base)
	}
	start := time.Now()
	stop()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Run took %v to return with probes hung on a 1 minute timeout", d)
	}
	waitFor(t, 5*time.Second, "goroutines back to the base", func() bool { return runtime.NumGoroutine() <= base })

	// Run again after a stop works, and stops again.
	stop = mustRun(t, c)
	waitFor(t, 5*time.Second, "probes again", func() bool { return c.States()[targets[2].Key].Probes > 3 })
	stop()
	waitFor(t, 5*time.Second, "goroutines back to the base", func() bool { return runtime.NumGoroutine() <= base })
}

func TestRunTwice(t *testing.T) {
	c := newTestChecker(t, nil)
	mustRun(t, c)
	waitFor(t, time.Second, "Run to start", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.run != nil })
	if err := c.Run(context.Background()); err != ErrRunning {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	c := newTestChecker(t, reg)
	dead := target(t, closedPort(t), fast(TypeTCP))
	dead.Spec.Fall = 1
	ln := tcpServer(t)
	alive := target(t, ln.Addr().String(), fast(TypeTCP))
	alive.Key.VIP = "vip2"
	c.Set([]Target{dead, alive})
	stop := mustRun(t, c)
	waitStatus(t, c, dead.Key, StatusDown)
	waitFor(t, 5*time.Second, "alive probed", func() bool { return c.States()[alive.Key].Probes > 0 })
	stop()

	// Unknown → Up is no transition (it was served all along); Unknown → Down is.
	want := `
# HELP lbd_health_transitions_total Changes of this node's own probe state of a backend port behind a VIP, between served (unknown or up) and not served (down), by the state entered. The rings follow the verdict (lbd_backend_verdict_transitions_total), which in a cluster is the quorum of every LB node's probes.
# TYPE lbd_health_transitions_total counter
lbd_health_transitions_total{backend="` + dead.Key.backendLabel() + `",to="down",vip="vip1"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lbd_health_transitions_total"); err != nil {
		t.Error(err)
	}
	states := c.States()
	for _, tc := range []struct {
		tg     Target
		result string
	}{{dead, resultFailure}, {alive, resultSuccess}} {
		probes := float64(states[tc.tg.Key].Probes)
		if got := testutil.ToFloat64(c.met.probes.WithLabelValues(tc.tg.Key.VIP, tc.result)); got != probes {
			t.Errorf("probes_total{vip=%s,result=%s} = %v, want %v", tc.tg.Key.VIP, tc.result, got, probes)
		}
		if got := histCount(t, reg, "lbd_health_probe_duration_seconds", tc.tg.Key.VIP); got != uint64(probes) {
			t.Errorf("probe_duration_seconds{vip=%s} count %d, want %v", tc.tg.Key.VIP, got, probes)
		}
	}
	if got := histCount(t, reg, "lbd_health_probe_lag_seconds", ""); got < uint64(states[dead.Key].Probes) {
		t.Errorf("probe_lag_seconds count %d, want at least one per probe", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	// A removed target's transition series go with it.
	c.Set([]Target{alive})
	if n := testutil.CollectAndCount(c.met.transitions); n != 0 {
		t.Errorf("%d transition series left after removing the target", n)
	}
}

// histCount returns the sample count of histogram name (for label vip, if set).
func histCount(t *testing.T, reg prometheus.Gatherer, name, vip string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := vip == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "vip" && l.GetValue() == vip {
					match = true
				}
			}
			if match {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

// TestSetWhileInFlight changes and removes targets while their probes run: the
// old probe's result is dropped and the target is probed again with the new spec.
func TestSetWhileInFlight(t *testing.T) {
	hang := tcpHang(t)
	c := newTestChecker(t, nil)
	c.phase = func(time.Duration) time.Duration { return 0 }
	spec := Spec{Type: TypeHTTP, Interval: 300 * time.Millisecond, Timeout: 300 * time.Millisecond, Rise: 1, Fall: 5}
	a := target(t, hang.Addr().String(), spec)
	b := a
	b.Key.Port++ // same backend socket, another key
	c.Set([]Target{a, b})
	mustRun(t, c)
	waitFor(t, 5*time.Second, "both probes in flight", func() bool { return len(c.slots) == 2 })

	a2 := a
	a2.Spec.Type = TypeTCP // the hanging server accepts: tcp succeeds
	c.Set([]Target{a2})    // a changes, b goes, both mid-probe
	if _, ok := c.States()[b.Key]; ok {
		t.Error("removed target still has a state")
	}
	st := waitStatus(t, c, a.Key, StatusUp)
	if st.LastErr != "" || st.Probes == 0 {
		t.Errorf("after the change: %+v, want a successful tcp probe", st)
	}
	waitFor(t, 5*time.Second, "the removed target's probe to end", func() bool { return len(c.slots) == 0 })
}
