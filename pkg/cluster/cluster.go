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
	// OnChange is called after Verdict or the fingerprints changed, and after
	// a member joined, left or changed its config digest: from one
	// goroutine (never concurrently), holding no lock, so it may call any
	// method but Shutdown (which waits for it). Calls coalesce: one call may
	// cover many changes.
	OnChange func()
	// OnFlows receives the flow sync messages other nodes send (SendFlows),
	// from memberlist's goroutines: it must not block. The slice is the
	// callee's.
	OnFlows func(msg []byte)
}

// Cluster is this node's membership in the cluster of LB nodes.
type Cluster struct {
	name       string
	quorum     Quorum
	log        *slog.Logger
	reg        prometheus.Registerer
	metrics    *metrics
	onChange   func()
	onFlows    func([]byte)
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

	left atomic.Bool
	// joinAttempted: the first attempt to join the seeds has ended (true without seeds)
	joinAttempted atomic.Bool
	lifeMu        sync.Mutex
	shutdown      bool
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
		onFlows:  opts.OnFlows,
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
	} else {
		c.joinAttempted.Store(true)
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

// signal wakes a goroutine waiting on ch without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
