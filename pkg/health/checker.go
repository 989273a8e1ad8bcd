package health

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxInFlight bounds the probes running at once when Options.MaxInFlight is 0:
// 10,000 targets at 1s that all time out at 500ms keep 5,000 probes in flight.
// Each holds a socket (a file descriptor) and a goroutine.
const DefaultMaxInFlight = 8192

// ErrRunning is returned by Run when the checker is already running.
var ErrRunning = errors.New("health checker already running")

// Options configure a Checker. All fields are optional.
type Options struct {
	// Registerer receives the lbd_health_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger // nil: slog.Default()
	// OnChange is called after a target's Status changes, with its new State. It is
	// called from probe goroutines (and from Set for targets that are not probed),
	// possibly concurrently for different keys, and must not block: hand the news
	// on (a channel, a dirty flag) and read States for the current truth.
	OnChange func(Key, State)
	// MaxInFlight bounds the probes running at once; 0 means DefaultMaxInFlight.
	// It should exceed targets × typical probe time / interval, or probes start late
	// (watch lbd_health_probe_lag_seconds).
	MaxInFlight int
	// Now is the clock for State.Since; nil means time.Now. Scheduling uses real timers.
	Now func() time.Time
}

// Checker probes a set of targets and keeps one rise/fall state machine per Key.
//
// One scheduler goroutine (the one calling Run) keeps the targets in a min-heap by
// next probe time and starts each due probe in its own short-lived goroutine,
// at most MaxInFlight at once. An idle target costs a heap slot, not a goroutine
// and a timer: the same CPU as one sleeping goroutine per target at 10,000
// targets, a third of the memory (doc.go).
type Checker struct {
	log      *slog.Logger
	onChange func(Key, State)
	now      func() time.Time
	met      *metrics
	slots    chan struct{}                              // probe concurrency limit
	phase    func(interval time.Duration) time.Duration // first probe's delay; tests override
	wake     chan struct{}                              // the queue's head moved earlier

	mu      sync.Mutex
	entries map[Key]*entry
	queue   queue           // targets waiting for their next probe, while running
	run     context.Context // non-nil while Run is running
	wg      sync.WaitGroup  // probe goroutines
}

// entry is one target's state, guarded by Checker.mu.
type entry struct {
	t      Target      // normalized spec
	gen    uint64      // bumped when t changes; results of an older generation are dropped
	probe  prober      // nil: not probed (type none, or an invalid spec)
	dialer *net.Dialer // for probers that use one
	m      machine
	st     State
	tm     targetMetrics

	due     time.Time // next probe's scheduled start
	idx     int       // index in Checker.queue, -1 when not queued
	running bool      // a probe is in flight
	removed bool
}

// job is one probe to run, with what it needs copied out from under the lock.
type job struct {
	e      *entry
	gen    uint64
	due    time.Time
	t      Target
	probe  prober
	dialer *net.Dialer
}

// NewChecker returns a checker with no targets. Call Set and Run.
func NewChecker(opts Options) *Checker {
	c := &Checker{
		log:      opts.Logger,
		onChange: opts.OnChange,
		now:      opts.Now,
		met:      newMetrics(opts.Registerer),
		entries:  make(map[Key]*entry),
		wake:     make(chan struct{}, 1),
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	// The random phase is the jitter: n targets added together form a uniform
	// stream of n/interval probes per second instead of a burst, and keep it.
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
			c.unqueueLocked(e)
			e.removed = true
			delete(c.entries, k)
			c.met.transitions.DeletePartialMatch(prometheus.Labels{"vip": k.VIP, "backend": k.backendLabel()})
		}
	}
	for k, t := range want {
		e, ok := c.entries[k]
		switch {
		case !ok:
			e = &entry{st: State{Status: StatusUnknown, Up: true, Since: now}, idx: -1}
			c.entries[k] = e
		case e.t.sameProbe(t):
			continue
		default:
			c.unqueueLocked(e)
			e.gen++
		}
		e.t = t
		if ch, ok := c.configureLocked(e, now); ok {
			changes = append(changes, ch)
		}
		if c.run != nil && e.probe != nil && !e.running {
			// A running probe of the old target reschedules e when it ends.
			c.queueLocked(e, time.Now().Add(c.phase(t.Spec.Interval)))
		}
	}
	c.mu.Unlock()
	c.notify(changes)
}

// configureLocked sets e's prober for e.t. A target that is not probed gets its
// status at once: up for type none, down for an invalid spec.
func (c *Checker) configureLocked(e *entry, now time.Time) (change, bool) {
	e.probe, e.dialer = nil, nil
	if err := e.t.Spec.Validate(); err != nil {
		c.log.Error("health check not started", "target", e.t.Key, "err", err)
		e.st.LastErr = err.Error()
		return c.setStatusLocked(e, StatusDown, now)
	}
	if e.t.Spec.Type == TypeNone {
		e.st.LastErr = ""
		return c.setStatusLocked(e, StatusUp, now)
	}
	e.probe = proberFor(e.t.Spec.Type)
	e.dialer = &net.Dialer{Control: markControl(e.t.Mark), KeepAlive: -1} // a probe lives for one exchange
	e.tm = c.met.forTarget(&e.t)
	return change{}, false
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
	now := time.Now()
	for _, e := range c.entries {
		e.running = false // nothing is in flight: the last Run waited for its probes
		if e.probe != nil {
			c.queueLocked(e, now.Add(c.phase(e.t.Spec.Interval)))
		}
	}
	c.mu.Unlock()

	c.schedule(ctx)

	c.mu.Lock()
	c.run = nil
	for _, e := range c.queue {
		e.idx = -1
	}
	c.queue = c.queue[:0]
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// schedule starts probes as they fall due until ctx is done.
func (c *Checker) schedule(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []job
	for {
		due = due[:0]
		wait := time.Duration(-1) // no target queued
		c.mu.Lock()
		now := time.Now()
		for len(c.queue) > 0 {
			e := c.queue[0]
			if d := e.due.Sub(now); d > 0 {
				wait = d
				break
			}
			heap.Pop(&c.queue)
			e.running = true
			due = append(due, job{e: e, gen: e.gen, due: e.due, t: e.t, probe: e.probe, dialer: e.dialer})
		}
		c.mu.Unlock()

		for _, j := range due {
			select {
			case c.slots <- struct{}{}:
			case <-ctx.Done():
				return // Run clears the running marks of the jobs left
			}
			c.wg.Add(1)
			go c.runProbe(ctx, j)
		}
		if len(due) > 0 {
			continue // time has passed; look again
		}
		var tick <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tick = timer.C
		}
		select {
		case <-tick:
		case <-c.wake:
		case <-ctx.Done():
			return
		}
	}
}

// runProbe runs one probe and hands its result to finish.
func (c *Checker) runProbe(ctx context.Context, j job) {
	defer c.wg.Done()
	start := time.Now()
	c.met.lag.Observe(start.Sub(j.due).Seconds())
	pctx, cancel := context.WithTimeout(ctx, j.t.Spec.Timeout)
	err := j.probe(pctx, j.dialer, &j.t)
	cancel()
	took := time.Since(start)
	<-c.slots
	c.finish(ctx, j, err, took)
}

// finish records a probe's result and queues the target's next probe.
func (c *Checker) finish(ctx context.Context, j job, err error, took time.Duration) {
	now := c.now()
	var (
		ch      change
		changed bool
		from    Status
	)
	c.mu.Lock()
	e := j.e
	e.running = false
	if e.removed || ctx.Err() != nil {
		// Gone, or stopping: a probe cut short by the stop says nothing.
		c.mu.Unlock()
		return
	}
	if e.gen == j.gen {
		from = e.st.Status
		ch, changed = c.recordLocked(e, err, took, now)
		next := j.due.Add(e.t.Spec.Interval)
		if t := time.Now(); next.Before(t) {
			next = t // behind: probe at once rather than bunch up missed slots
		}
		c.queueLocked(e, next)
	} else if e.probe != nil {
		// The target changed while this probe ran: drop the result, start afresh.
		c.queueLocked(e, time.Now().Add(c.phase(e.t.Spec.Interval)))
	}
	c.mu.Unlock()
	if changed {
		switch {
		case ch.st.Status == StatusDown:
			c.log.Warn("backend down", "target", ch.key, "err", ch.st.LastErr, "failures", ch.st.Consecutive)
		case from == StatusDown:
			c.log.Info("backend up", "target", ch.key, "successes", ch.st.Consecutive)
		default: // unknown → up: it was served already; say it quietly (10,000 of them at start)
			c.log.Debug("backend up", "target", ch.key)
		}
		c.notify([]change{ch})
	}
}

// recordLocked applies one probe result to e's state machine and metrics.
func (c *Checker) recordLocked(e *entry, err error, took time.Duration, now time.Time) (change, bool) {
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
	_, moved := e.m.observe(err == nil, s.Rise, s.Fall)
	e.st.Consecutive = e.m.consecutive()
	if !moved {
		return change{}, false
	}
	return c.setStatusLocked(e, e.m.status, now)
}

// queueLocked schedules e's next probe at due.
func (c *Checker) queueLocked(e *entry, due time.Time) {
	e.due = due
	heap.Push(&c.queue, e)
	if e.idx == 0 {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

func (c *Checker) unqueueLocked(e *entry) {
	if e.idx >= 0 {
		heap.Remove(&c.queue, e.idx)
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

// queue is a min-heap of entries by due time (container/heap).
type queue []*entry

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = i, j
}

func (q *queue) Push(x any) {
	e := x.(*entry)
	e.idx = len(*q)
	*q = append(*q, e)
}

func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.idx = -1
	*q = old[:len(old)-1]
	return e
}
