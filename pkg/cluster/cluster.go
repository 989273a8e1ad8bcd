// Package cluster lets LB nodes agree on which backends are in the rings.
//
// Each node gossips its own probe results (its view) with hashicorp/memberlist;
// every node merges the views of the live nodes that run the same
// configuration with Decide, so every node computes the same verdict and
// builds the same rings. Each node also gossips a fingerprint of its rings, so
// disagreement shows (Status, lbd_cluster_fingerprint_divergence).
//
// What travels where:
//   - node meta (memberlist alive messages): the config digest;
//   - broadcasts (UDP gossip, stateQueue): a node's state (name, version,
//     config digest, fingerprint, view) when it changes, relayed by the nodes
//     that take it in, and again every second while it changed in the last
//     few seconds; a state too large for a packet is sent to each member over
//     TCP instead;
//   - push-pull (TCP, on join and every 10s): every node state known, so
//     anything lost in gossip heals.
//
// A newer version of a node's state replaces an older one; stale ones are
// ignored. Versions start at the wall clock in nanoseconds when the node
// starts, so a restarted node's state replaces its earlier run's; a node that
// sees a state of its own with a higher version (clock stepped back) raises
// its version above it.
package cluster

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	// ErrNoSecret: no gossip key and Options.Insecure not set.
	ErrNoSecret = errors.New("no cluster secret (set one, or allow insecure gossip)")
	// ErrShutdown: the Cluster was shut down.
	ErrShutdown = errors.New("cluster shut down")
)

// Options configures a Cluster.
type Options struct {
	// NodeName is this node's unique name in the cluster.
	NodeName string
	// Bind is where to listen, TCP and UDP. The zero address means 0.0.0.0;
	// port 0 picks a free port (see LocalAddr).
	Bind netip.AddrPort
	// AdvertiseAddr is the address other nodes reach this one at; by default
	// (zero) the bind address, or a private address of the host when bound to
	// all.
	AdvertiseAddr netip.Addr
	// Join lists seeds, host:port. Joining runs in the background and is
	// retried with backoff while this node is alone, so nodes may start in any
	// order; a node alone still works (and decides alone).
	Join []string
	// SecretKey encrypts and authenticates gossip (AES-GCM): 16, 24 or 32
	// bytes, the same on every node; see LoadSecret. Nodes with another key
	// cannot join. nil is allowed only with Insecure.
	SecretKey []byte
	Insecure  bool
	// Quorum: QuorumMajority (default, also for ""), QuorumAny or QuorumAll.
	Quorum Quorum
	// ConfigDigest identifies the VIP configuration (at most 128 bytes).
	// Nodes with a different digest are reported in Status and their views
	// are not merged into the verdict.
	ConfigDigest string
	// Registerer receives the metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Logger receives this package's and memberlist's logs; nil discards.
	Logger *slog.Logger
	// OnChange is called after Verdict or the fingerprints changed: from one
	// goroutine (never concurrently), holding no lock, so it may call any
	// method but Shutdown (which waits for it). Calls coalesce: one call may
	// cover many changes.
	OnChange func()
}

// Cluster is this node's membership in the cluster of LB nodes.
type Cluster struct {
	name       string
	quorum     Quorum
	log        *slog.Logger
	reg        prometheus.Registerer
	metrics    *metrics
	onChange   func()
	ml         *memberlist.Memberlist
	broadcasts *stateQueue
	meta       atomic.Pointer[[]byte] // node meta, read by memberlist at any time
	live       atomic.Int32           // live members, for the retransmit limit

	// pubMu orders publications of this node's state; taken before mu.
	pubMu     sync.Mutex
	published uint64 // version last queued or sent

	republishEvery time.Duration // 0: never
	republishFor   time.Duration

	mu           sync.Mutex
	states       map[string]NodeView // by node name, this node's included
	ownChanged   time.Time           // when this node's state last got a new version
	members      map[string]*member  // by node name, departed ones included
	verdict      map[BackendKey]bool
	fingerprints map[string]string // of the voters
	agree        bool

	changed    chan struct{} // verdict or fingerprints changed (cap 1)
	sendDirect chan struct{} // this node's state is too big for gossip (cap 1)
	done       chan struct{}
	wg         sync.WaitGroup

	left     atomic.Bool
	lifeMu   sync.Mutex
	shutdown bool
}

// member is what memberlist last told about a node.
type member struct {
	addr        string
	digest      string
	knownDigest bool // the node's meta carried a digest
	live        bool
	goneAt      time.Time // when it stopped being live
}

// forgetAfter is how long a departed member stays in Status (as dead or
// left) before it and its state are forgotten.
const forgetAfter = time.Hour

// New starts this node's gossip and, in the background, joins opts.Join.
func New(opts Options) (*Cluster, error) {
	if opts.NodeName == "" {
		return nil, errors.New("cluster: node name is empty")
	}
	q := cmp.Or(opts.Quorum, QuorumMajority)
	if !q.valid() {
		return nil, fmt.Errorf("cluster: %w %q: want majority, any or all", ErrBadQuorum, q)
	}
	if len(opts.ConfigDigest) > maxDigestLen {
		return nil, fmt.Errorf("cluster: config digest is %d bytes, at most %d", len(opts.ConfigDigest), maxDigestLen)
	}
	if opts.SecretKey == nil && !opts.Insecure {
		return nil, fmt.Errorf("cluster: %w", ErrNoSecret)
	}
	if opts.SecretKey != nil {
		if err := checkSecret(opts.SecretKey); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}

	c := &Cluster{
		name:     opts.NodeName,
		quorum:   q,
		log:      logger.With("component", "cluster", "node", opts.NodeName),
		reg:      reg,
		metrics:  newMetrics(),
		onChange: opts.OnChange,
		states: map[string]NodeView{opts.NodeName: {
			ConfigDigest: opts.ConfigDigest,
			Version:      uint64(time.Now().UnixNano()),
			Backends:     map[BackendKey]bool{},
		}},
		members:    map[string]*member{},
		verdict:    map[BackendKey]bool{},
		changed:    make(chan struct{}, 1),
		sendDirect: make(chan struct{}, 1),
		done:       make(chan struct{}),

		republishEvery: republishEvery,
		republishFor:   republishFor,
	}
	meta := encodeMeta(opts.ConfigDigest)
	c.meta.Store(&meta)
	c.live.Store(1)

	cfg := memberlistConfig(opts, logger.With("component", "memberlist", "node", opts.NodeName))
	cfg.Delegate = &delegate{c: c}
	cfg.Events = &events{c: c}
	cfg.Conflict = &events{c: c}
	c.broadcasts = newStateQueue(func() int { return int(c.live.Load()) }, cfg.RetransmitMult)

	if err := c.metrics.register(reg); err != nil {
		return nil, fmt.Errorf("cluster: register metrics: %w", err)
	}
	c.mu.Lock()
	c.recomputeLocked()
	c.mu.Unlock()

	ml, err := memberlist.Create(cfg)
	if err != nil {
		c.metrics.unregister(reg)
		return nil, fmt.Errorf("cluster: start gossip on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	c.ml = ml

	c.wg.Add(3)
	go c.notifier()
	go c.sender()
	go c.republisher()
	// a seed list shared by every node names this one too: skip it
	seeds := slices.DeleteFunc(slices.Clone(opts.Join), func(s string) bool { return s == c.LocalAddr() })
	if len(seeds) > 0 {
		c.wg.Add(1)
		go c.joinLoop(seeds)
	}
	c.log.Info("cluster gossip started", "addr", c.LocalAddr(), "quorum", q,
		"encrypted", opts.SecretKey != nil, "seeds", seeds)
	return c, nil
}

// LocalAddr is the host:port this node advertises to the others.
func (c *Cluster) LocalAddr() string {
	return c.ml.LocalNode().Address()
}

// SetLocal replaces this node's probe results: true = up; a backend this node
// does not probe, or has no result for yet, is left out so that it does not
// vote on it. A changed view gets a new version and is gossiped.
func (c *Cluster) SetLocal(view map[BackendKey]bool) {
	backends := maps.Clone(view)
	if backends == nil {
		backends = map[BackendKey]bool{}
	}
	c.updateOwn(func(v *NodeView) bool {
		if maps.Equal(v.Backends, backends) {
			return false
		}
		v.Backends = backends
		return true
	})
}

// SetFingerprint sets the fingerprint of this node's rings, gossiped with its
// view.
func (c *Cluster) SetFingerprint(fp string) {
	c.updateOwn(func(v *NodeView) bool {
		if v.Fingerprint == fp {
			return false
		}
		v.Fingerprint = fp
		return true
	})
}

// SetConfigDigest changes this node's config digest (after a reload): in its
// node meta and in its gossiped state. It waits up to timeout for the new meta
// to be sent to one member.
func (c *Cluster) SetConfigDigest(digest string, timeout time.Duration) error {
	if len(digest) > maxDigestLen {
		return fmt.Errorf("cluster: config digest is %d bytes, at most %d", len(digest), maxDigestLen)
	}
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.shutdown {
		return ErrShutdown
	}
	meta := encodeMeta(digest)
	c.meta.Store(&meta)
	c.updateOwn(func(v *NodeView) bool {
		if v.ConfigDigest == digest {
			return false
		}
		v.ConfigDigest = digest
		return true
	})
	if err := c.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("cluster: announce config digest: %w", err)
	}
	return nil
}

// updateOwn applies change to this node's state; if it changed anything the
// version is bumped, the verdict recomputed and the state published.
func (c *Cluster) updateOwn(change func(v *NodeView) bool) {
	c.mu.Lock()
	own := c.states[c.name]
	if !change(&own) {
		c.mu.Unlock()
		return
	}
	own.Version++
	c.states[c.name] = own
	c.ownChanged = time.Now()
	c.metrics.viewUpdates.Inc()
	changed := c.recomputeLocked()
	c.mu.Unlock()
	if changed {
		signal(c.changed)
	}
	c.publish(false)
}

// Verdict returns the cluster's verdict: for each backend that a voting node
// probes, true when it is in the ring. The map is the caller's.
func (c *Cluster) Verdict() map[BackendKey]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.verdict)
}

// Leave tells the other nodes that this one is going, so they drop it from
// the quorum at once instead of after failure detection, waiting up to
// timeout for the message to go out. Call Shutdown afterwards.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.shutdown {
		return ErrShutdown
	}
	c.left.Store(true)
	// tell the others this is a leave, not a failure (memberlist's own
	// leave message looks like any death to its event delegate)
	c.updateOwn(func(v *NodeView) bool {
		changed := !v.Leaving
		v.Leaving = true
		return changed
	})
	if err := c.ml.Leave(timeout); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	return nil
}

// Shutdown stops gossip without telling the others (they detect the failure;
// see memberlistConfig for how long that takes) and unregisters the metrics.
// It is safe to call more than once.
func (c *Cluster) Shutdown() error {
	c.lifeMu.Lock()
	if c.shutdown {
		c.lifeMu.Unlock()
		return nil
	}
	c.shutdown = true
	c.lifeMu.Unlock()

	err := c.ml.Shutdown()
	close(c.done)
	c.wg.Wait()
	c.metrics.unregister(c.reg)
	if err != nil {
		return fmt.Errorf("cluster: shutdown: %w", err)
	}
	return nil
}

// memberChanged records what memberlist said about a node. Called with
// memberlist's node lock held.
func (c *Cluster) memberChanged(n *memberlist.Node, live bool) {
	digest, known := decodeMeta(n.Meta)
	c.mu.Lock()
	m := c.members[n.Name]
	if m == nil {
		m = &member{}
		c.members[n.Name] = m
	}
	*m = member{addr: n.Address(), digest: digest, knownDigest: known, live: live}
	now := time.Now()
	if !live {
		m.goneAt = now
	}
	for name, old := range c.members {
		if name != c.name && !old.live && now.Sub(old.goneAt) > forgetAfter {
			delete(c.members, name)
			delete(c.states, name)
		}
	}
	changed := c.recomputeLocked()
	c.mu.Unlock()
	if changed {
		signal(c.changed)
	}
}

// mergeStates takes in node states from other nodes and returns those that
// were newer than what this node had.
func (c *Cluster) mergeStates(states []wireState) []wireState {
	var accepted []wireState
	refute := false
	c.mu.Lock()
	for _, ws := range states {
		if ws.Node == c.name {
			// a state of this node from an earlier run with a higher version:
			// go above it so the others take this run's state
			if own := c.states[c.name]; ws.Version > own.Version {
				own.Version = ws.Version + 1
				c.states[c.name] = own
				c.ownChanged = time.Now()
				refute = true
			}
			continue
		}
		if cur, ok := c.states[ws.Node]; ok && ws.Version <= cur.Version {
			continue
		}
		c.states[ws.Node] = ws.view()
		c.metrics.viewUpdates.Inc()
		accepted = append(accepted, ws)
	}
	changed := false
	if len(accepted) > 0 {
		changed = c.recomputeLocked()
	}
	c.mu.Unlock()
	if changed {
		signal(c.changed)
	}
	if refute {
		c.log.Info("saw this node's state from an earlier run; raised the version above it")
		c.publish(false)
	}
	return accepted
}

// recomputeLocked recomputes the verdict, the fingerprint agreement and the
// gauges, and reports whether the verdict or the fingerprints changed.
func (c *Cluster) recomputeLocked() bool {
	live := c.liveLocked()
	c.live.Store(int32(len(live)))
	verdict := Decide(c.name, c.states, live, c.quorum)

	own := c.states[c.name]
	fingerprints := make(map[string]string, len(live))
	agree := true
	mismatch := 0
	for _, name := range live {
		if !c.sameConfigLocked(name) {
			mismatch++
			continue
		}
		st, ok := c.states[name]
		if !ok || st.ConfigDigest != own.ConfigDigest {
			agree = false // its state under this config is not known yet
			continue
		}
		fingerprints[name] = st.Fingerprint
		if st.Fingerprint != own.Fingerprint {
			agree = false
		}
	}

	c.metrics.members.Set(float64(len(live)))
	c.metrics.configMismatch.Set(float64(mismatch))
	if agree {
		c.metrics.fingerprintDiverg.Set(0)
	} else {
		c.metrics.fingerprintDiverg.Set(1)
	}

	changed := !maps.Equal(verdict, c.verdict) || !maps.Equal(fingerprints, c.fingerprints) || agree != c.agree
	c.verdict, c.fingerprints, c.agree = verdict, fingerprints, agree
	return changed
}

// liveLocked lists the live members, this node always included.
func (c *Cluster) liveLocked() []string {
	live := []string{c.name}
	for name, m := range c.members {
		if m.live && name != c.name {
			live = append(live, name)
		}
	}
	return live
}

// sameConfigLocked reports whether a member announces this node's digest.
func (c *Cluster) sameConfigLocked(name string) bool {
	if name == c.name {
		return true
	}
	m := c.members[name]
	return m != nil && m.knownDigest && m.digest == c.states[c.name].ConfigDigest
}

// publish gossips this node's latest state if it has not been yet, or again
// when force is set (a node joined). Concurrent calls may publish in any
// order: each one publishes the state as it is then, and the queue never
// puts an older version in place of a newer one.
func (c *Cluster) publish(force bool) {
	c.publishOwn(force, false)
}

// republish queues this node's latest state for gossip again if it fits in
// a packet (one too large went to each member over TCP, which does not lose
// it silently).
func (c *Cluster) republish() {
	c.publishOwn(true, true)
}

func (c *Cluster) publishOwn(force, gossipOnly bool) {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	own := c.states[c.name]
	c.mu.Unlock()
	if !force && own.Version <= c.published {
		return
	}
	c.published = max(c.published, own.Version)
	msg, err := encodeMessage(msgNodeState, toWire(c.name, own))
	if err != nil {
		c.log.Error("encode node state", "err", err)
		return
	}
	if len(msg) <= maxBroadcastSize {
		c.broadcasts.queue(c.name, own.Version, msg)
		return
	}
	if gossipOnly {
		return
	}
	// an earlier, smaller state may still be queued: the TCP send replaces it
	c.broadcasts.drop(c.name, own.Version)
	signal(c.sendDirect)
}

// relay passes on a state learnt from another node, gossip being epidemic
// (the originator's transmissions alone may miss a node), if it is still the
// newest this node holds of that node. msg is the state as received, or nil
// to encode it. Large states are not relayed: their originator sends them to
// every member itself.
func (c *Cluster) relay(ws wireState, msg []byte) {
	if msg == nil {
		var err error
		if msg, err = encodeMessage(msgNodeState, ws); err != nil {
			return
		}
	}
	if len(msg) > maxBroadcastSize {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.states[ws.Node]; ok && cur.Version == ws.Version {
		c.broadcasts.queue(ws.Node, ws.Version, msg)
	}
}

// republishEvery and republishFor: while this node's state changed within
// republishFor, it is queued for gossip again every republishEvery, so a
// state whose every transmission was lost still arrives within about a
// second, not at the next push-pull. Receivers that have it ignore it and do
// not relay it, so it costs a few packets after each change.
var (
	republishEvery = time.Second
	republishFor   = 5 * time.Second
)

// republisher queues this node's state again while it changed recently.
func (c *Cluster) republisher() {
	defer c.wg.Done()
	if c.republishEvery <= 0 {
		return
	}
	tick := time.NewTicker(c.republishEvery)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		c.mu.Lock()
		recent := time.Since(c.ownChanged) < c.republishFor
		c.mu.Unlock()
		if recent {
			c.republish()
		}
	}
}

// encodePushPull encodes every known node state.
func (c *Cluster) encodePushPull() ([]byte, error) {
	c.mu.Lock()
	pp := wirePushPull{States: make([]wireState, 0, len(c.states))}
	for name, v := range c.states {
		pp.States = append(pp.States, toWire(name, v))
	}
	c.mu.Unlock()
	return encodeMessage(msgPushPull, pp)
}

// notifier calls OnChange, one call at a time, holding no lock.
func (c *Cluster) notifier() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case <-c.changed:
			if c.onChange != nil {
				c.onChange()
			}
		}
	}
}

// sender sends this node's state to every member over TCP when it is too
// large for gossip. Requests coalesce: each send carries the latest state.
func (c *Cluster) sender() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case <-c.sendDirect:
		}
		c.mu.Lock()
		own := c.states[c.name]
		c.mu.Unlock()
		msg, err := encodeMessage(msgNodeState, toWire(c.name, own))
		if err != nil || len(msg) <= maxBroadcastSize {
			continue
		}
		var wg sync.WaitGroup
		for _, n := range c.ml.Members() {
			if n.Name == c.name {
				continue
			}
			wg.Go(func() {
				if err := c.ml.SendReliable(n, msg); err != nil {
					c.log.Debug("send node state", "member", n.Name, "err", err)
				}
			})
		}
		wg.Wait()
	}
}

const (
	joinRetryMin = 250 * time.Millisecond
	joinRetryMax = 5 * time.Second
	// aloneCheck is how often a joined node checks whether it is alone again
	// (every other node restarted) and needs to rejoin through the seeds.
	aloneCheck = 5 * time.Second
)

// joinLoop joins the seeds while this node is alone, with backoff.
func (c *Cluster) joinLoop(seeds []string) {
	defer c.wg.Done()
	wait := time.Duration(0)
	backoff := joinRetryMin
	for {
		select {
		case <-c.done:
			return
		case <-time.After(wait):
		}
		if c.left.Load() {
			return
		}
		if c.live.Load() > 1 {
			wait, backoff = aloneCheck, joinRetryMin
			continue
		}
		n, err := c.ml.Join(seeds)
		if n > 0 {
			c.log.Info("joined cluster", "seeds_reached", n)
			wait, backoff = aloneCheck, joinRetryMin
			continue
		}
		c.metrics.joinFailures.Inc()
		c.log.Warn("join cluster: no seed reached; retrying", "seeds", seeds, "retry_in", backoff, "err", err)
		wait = backoff
		backoff = min(2*backoff, joinRetryMax)
	}
}

// signal wakes a goroutine waiting on ch without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
