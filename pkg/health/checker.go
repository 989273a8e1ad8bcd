package health

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxInFlight bounds the probes running at once when Options.MaxInFlight is 0.
// Enough for 10,000 targets at 1s whose probes all take 400ms.
const DefaultMaxInFlight = 4096

// ErrRunning is returned by Run when the checker is already running.
var ErrRunning = errors.New("health checker already running")

// Options configure a Checker. All fields are optional.
type Options struct {
	// Registerer receives the lbd_health_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger // nil: slog.Default()
	// OnChange is called after a target's Status changes, with its new State. It is
	// called from probe goroutines, possibly concurrently for different keys, and
	// must not block: hand the news on (a channel, a dirty flag) and return.
	OnChange func(Key, State)
	// MaxInFlight bounds the probes running at once; 0 means DefaultMaxInFlight.
	// It should exceed targets × typical probe time / interval, or probes start late
	// (watch lbd_health_probe_lag_seconds).
	MaxInFlight int
	// Now is the clock for State.Since; nil means time.Now. Scheduling uses real timers.
	Now func() time.Time
}

// Checker probes a set of targets and keeps one rise/fall state machine per Key.
type Checker struct {
	log      *slog.Logger
	onChange func(Key, State)
	now      func() time.Time
	met      *metrics
	slots    chan struct{}                              // probe concurrency limit
	phase    func(interval time.Duration) time.Duration // first probe's delay; tests override

	mu      sync.Mutex
	entries map[Key]*entry
	run     context.Context // non-nil while Run is running
	wg      sync.WaitGroup  // probe loops
}

// entry is one target's state. Fields below mu in Checker are guarded by it.
type entry struct {
	t      Target // normalized spec
	gen    uint64 // bumped when t changes; results of an older generation are dropped
	m      machine
	st     State
	tm     targetMetrics
	cancel context.CancelFunc // stops the probe loop; nil when none runs
}

// NewChecker returns a checker with no targets. Call Set and Run.
func NewChecker(opts Options) *Checker {
	c := &Checker{
		log:      opts.Logger,
		onChange: opts.OnChange,
		now:      opts.Now,
		met:      newMetrics(opts.Registerer),
		entries:  make(map[Key]*entry),
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	// The random phase is the jitter: n targets added together form a uniform
	// stream of n/interval probes per second instead of a burst.
	c.phase = func(iv time.Duration) time.Duration { return time.Duration(rand.Int64N(int64(iv))) }
	n := opts.MaxInFlight
	if n <= 0 {
		n = DefaultMaxInFlight
	}
	c.slots = make(chan struct{}, n)
	return c
}

// change is an OnChange call to make once the lock is released.
type change struct {
	key Key
	st  State
}

// Set replaces the targets. New keys start in StatusUnknown and are probed from a
// random point of their first interval; removed keys stop; a key whose target is
// unchanged keeps its state and its schedule; a key whose address, mark or spec
// changed keeps its state and restarts probing with the new target. If targets
// repeat a key, the last one wins. Zero spec fields take the defaults; a target
// whose spec is invalid is not probed and is held down with the error in LastErr.
func (c *Checker) Set(targets []Target) {
	want := make(map[Key]Target, len(targets))
	for _, t := range targets {
		t.Spec = t.Spec.WithDefaults()
		want[t.Key] = t
	}
	now := c.now()
	var changes []change

	c.mu.Lock()
	for k, e := range c.entries {
		if _, ok := want[k]; !ok {
			c.stopLocked(e)
			delete(c.entries, k)
			c.met.transitions.DeletePartialMatch(prometheus.Labels{"vip": k.VIP, "backend": k.backendLabel()})
		}
	}
	for k, t := range want {
		e, ok := c.entries[k]
		switch {
		case !ok:
			e = &entry{t: t, st: State{Status: StatusUnknown, Up: true, Since: now}}
			c.entries[k] = e
		case e.t.sameProbe(t):
			continue
		default:
			c.stopLocked(e)
			e.t = t
			e.gen++
		}
		if err := t.Spec.Validate(); err != nil {
			c.log.Error("health check not started", "target", k, "err", err)
			e.st.LastErr = err.Error()
			if ch, ok := c.setStatusLocked(e, StatusDown, now); ok {
				changes = append(changes, ch)
			}
			continue
		}
		if t.Spec.Type == TypeNone {
			e.st.LastErr = ""
			if ch, ok := c.setStatusLocked(e, StatusUp, now); ok {
				changes = append(changes, ch)
			}
			continue
		}
		e.tm = c.met.forTarget(&e.t)
		if c.run != nil {
			c.startLocked(e)
		}
	}
	c.mu.Unlock()
	c.notify(changes)
}

// States returns a copy of every target's state.
func (c *Checker) States() map[Key]State {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[Key]State, len(c.entries))
	for k, e := range c.entries {
		out[k] = e.st
	}
	return out
}

// Run probes the targets until ctx is done, then stops every probe (in-flight
// ones are cancelled), waits for its goroutines and returns nil. Set may be called
// before, during and after Run.
func (c *Checker) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.run != nil {
		c.mu.Unlock()
		return ErrRunning
	}
	c.run = ctx
	for _, e := range c.entries {
		if c.probed(e) {
			c.startLocked(e)
		}
	}
	c.mu.Unlock()

	<-ctx.Done()

	c.mu.Lock()
	for _, e := range c.entries {
		c.stopLocked(e)
	}
	c.run = nil
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// probed reports whether e has a probe loop to run.
func (c *Checker) probed(e *entry) bool {
	return e.t.Spec.Type != TypeNone && e.t.Spec.Validate() == nil
}

func (c *Checker) startLocked(e *entry) {
	ctx, cancel := context.WithCancel(c.run)
	e.cancel = cancel
	c.wg.Add(1)
	go c.loop(ctx, e, e.t, e.gen)
}

func (c *Checker) stopLocked(e *entry) {
	if e.cancel != nil {
		e.cancel()
		e.cancel = nil
	}
}

// loop probes t every interval from a random phase until ctx is done.
func (c *Checker) loop(ctx context.Context, e *entry, t Target, gen uint64) {
	defer c.wg.Done()
	probe := proberFor(t.Spec.Type)
	d := &net.Dialer{Control: markControl(t.Mark)}
	iv := t.Spec.Interval
	due := time.Now().Add(c.phase(iv))
	timer := time.NewTimer(time.Until(due))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		select {
		case <-ctx.Done():
			return
		case c.slots <- struct{}{}:
		}
		start := time.Now()
		c.met.lag.Observe(start.Sub(due).Seconds())
		pctx, cancel := context.WithTimeout(ctx, t.Spec.Timeout)
		err := probe(pctx, d, &t)
		cancel()
		took := time.Since(start)
		<-c.slots
		if ctx.Err() != nil {
			return // stopping: the probe was cut short, its result says nothing
		}
		c.record(e, gen, err, took)

		due = due.Add(iv)
		if now := time.Now(); due.Before(now) {
			due = now // behind: probe at once rather than bunch up missed slots
		}
		timer.Reset(time.Until(due))
	}
}

// record applies one probe result to e's state machine.
func (c *Checker) record(e *entry, gen uint64, err error, took time.Duration) {
	now := c.now()
	var (
		ch      change
		changed bool
	)
	c.mu.Lock()
	if e.gen != gen || e.cancel == nil {
		c.mu.Unlock()
		return // the target changed or went away while this probe ran
	}
	s := &e.t.Spec
	e.tm.duration.Observe(took.Seconds())
	switch {
	case err == nil:
		e.tm.success.Inc()
	case isTimeout(err):
		e.tm.timeout.Inc()
	default:
		e.tm.failure.Inc()
	}
	e.st.Probes++
	e.st.LastLatency = took
	e.st.LastErr = ""
	if err != nil {
		e.st.LastErr = err.Error()
	}
	from, moved := e.m.observe(err == nil, s.Rise, s.Fall)
	e.st.Consecutive = e.m.consecutive()
	if moved {
		ch, changed = c.setStatusLocked(e, e.m.status, now)
	}
	c.mu.Unlock()
	if changed {
		if ch.st.Status == StatusDown {
			c.log.Warn("backend down", "target", ch.key, "err", ch.st.LastErr, "failures", ch.st.Consecutive)
		} else {
			c.log.Info("backend "+ch.st.Status.String(), "target", ch.key, "from", from.String())
		}
		c.notify([]change{ch})
	}
}

// setStatusLocked moves e to status to. Transitions are counted when the target
// starts or stops being served (Unknown → Up is not one).
func (c *Checker) setStatusLocked(e *entry, to Status, now time.Time) (change, bool) {
	e.m.status = to
	if e.st.Status == to {
		return change{}, false
	}
	wasUp := e.st.Up
	e.st.Status, e.st.Up, e.st.Since = to, to.Up(), now
	if e.st.Up != wasUp {
		c.met.transitions.WithLabelValues(e.t.Key.VIP, e.t.Key.backendLabel(), to.String()).Inc()
	}
	return change{key: e.t.Key, st: e.st}, true
}

func (c *Checker) notify(changes []change) {
	if c.onChange == nil {
		return
	}
	for _, ch := range changes {
		c.onChange(ch.key, ch.st)
	}
}
