// Package announce announces the addresses of an LB node's VIPs to its routers over BGP, so
// that they spread flows over the nodes by ECMP, and only while the node should get them.
//
// The daemon says, in domain terms, which addresses it serves and what keeps each from being
// announced (Wanted, Reasons); Decider adds the hold-down (announce_delay) and the grace
// periods; the Announcer runs the embedded GoBGP speaker (Speaker) so that exactly the
// decided routes are announced, changing only what changed; Shutdown drains gracefully.
package announce

import (
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// routes is what the Announcer needs of a speaker; Speaker is the BGP one.
type routes interface {
	Announce(netip.Addr, Attrs) error
	Withdraw(netip.Addr) error
	SetPeers([]Peer) error
	Peers() []PeerStatus
	Stop()
}

var _ routes = (*Speaker)(nil)

// Options configure an Announcer.
type Options struct {
	ASN      uint32
	RouterID netip.Addr
	HoldTime time.Duration
	Peers    []Peer
	Logger   *slog.Logger
	// Registerer receives the metrics; nil keeps them private.
	Registerer prometheus.Registerer
}

// Status is what `lbd status` shows of BGP.
type Status struct {
	ASN       uint32          `json:"asn"`
	RouterID  string          `json:"router_id"`
	Draining  bool            `json:"draining,omitempty"`
	Peers     []PeerStatus    `json:"peers"`
	Addresses []AddressStatus `json:"addresses"`
}

// AddressStatus is one VIP address.
type AddressStatus struct {
	Address   string    `json:"address"`
	VIPs      []string  `json:"vips"`
	Announced bool      `json:"announced"`
	Since     time.Time `json:"since"`
	// Held: why it is not announced. Pending: what an announced address has had for less than
	// the reason's grace; it is withdrawn if that lasts.
	Held    []Reason `json:"held,omitempty"`
	Pending []Reason `json:"pending,omitempty"`
}

// retryAfter is how soon a route the speaker refused is tried again.
const retryAfter = time.Second

// Announcer keeps the speaker's routes in line with the decisions.
type Announcer struct {
	log      *slog.Logger
	sp       routes
	asn      uint32
	routerID netip.Addr
	metrics  *metrics
	reg      prometheus.Registerer

	mu        sync.Mutex
	dec       Decider
	want      []Wanted
	attrs     Attrs
	states    []AddrState
	sent      map[netip.Addr]Attrs // what the speaker announces, with which attributes
	heldLog   map[netip.Addr]string
	draining  bool
	kick      chan struct{}
	done      chan struct{}
	loopEnded chan struct{}
}

// New starts the speaker and the loop that keeps its routes in line. Nothing is announced
// until Update says what.
func New(opts Options) (*Announcer, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := newMetrics()
	sp, err := StartSpeaker(SpeakerOptions{ASN: opts.ASN, RouterID: opts.RouterID, HoldTime: opts.HoldTime,
		Peers: opts.Peers, Logger: opts.Logger, OnPeer: func(ev PeerEvent) {
			if ev.Up {
				opts.Logger.Info("bgp peer up", "peer", ev.Peer)
				m.peerTransitions.WithLabelValues(ev.Peer.String(), "up").Inc()
			} else {
				opts.Logger.Warn("bgp peer down", "peer", ev.Peer, "reason", ev.Reason)
				m.peerTransitions.WithLabelValues(ev.Peer.String(), "down").Inc()
			}
		}})
	if err != nil {
		return nil, err
	}
	a, err := newAnnouncer(sp, opts.ASN, opts.RouterID, opts.Logger, reg, m)
	if err != nil {
		sp.Stop()
		return nil, err
	}
	opts.Logger.Info("bgp speaker started", "asn", opts.ASN, "router_id", opts.RouterID, "peers", len(opts.Peers),
		"hold_time", opts.HoldTime)
	return a, nil
}

func newAnnouncer(sp routes, asn uint32, routerID netip.Addr, log *slog.Logger, reg prometheus.Registerer, m *metrics) (*Announcer, error) {
	a := &Announcer{log: log, sp: sp, asn: asn, routerID: routerID, metrics: m, reg: reg,
		sent: map[netip.Addr]Attrs{}, heldLog: map[netip.Addr]string{},
		kick: make(chan struct{}, 1), done: make(chan struct{}), loopEnded: make(chan struct{})}
	m.status = a.Status
	if err := reg.Register(m); err != nil {
		return nil, fmt.Errorf("register bgp metrics: %w", err)
	}
	go a.loop()
	return a, nil
}

// Update says which addresses the node serves and what keeps each from being announced,
// how long an address must be announceable before it is announced, and the attributes of
// every route. It does not block: the loop applies it.
func (a *Announcer) Update(delay time.Duration, attrs Attrs, want []Wanted) {
	a.mu.Lock()
	a.dec.Delay, a.attrs, a.want = delay, attrs, want
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// SetPeers adds and removes peers; the other sessions stay up.
func (a *Announcer) SetPeers(peers []Peer) error { return a.sp.SetPeers(peers) }

func (a *Announcer) loop() {
	defer close(a.loopEnded)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-a.done:
			return
		case <-a.kick:
		case <-timer.C:
		}
		next := a.step(time.Now())
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), time.Millisecond))
		}
	}
}

// step decides at now and changes the speaker's routes to match; it returns when to step
// again (zero: only on the next Update).
func (a *Announcer) step(now time.Time) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.draining {
		return time.Time{}
	}
	states, next := a.dec.Decide(now, a.want)
	a.states = states
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	announce := map[netip.Addr]bool{}
	for _, st := range states {
		if !st.Announced {
			a.logHeld(st)
			continue
		}
		announce[st.Addr] = true
		attrs, ok := a.sent[st.Addr]
		if ok && equalAttrs(attrs, a.attrs) {
			continue
		}
		if err := a.sp.Announce(st.Addr, a.attrs); err != nil {
			a.log.Error("bgp announce", "address", st.Addr, "err", err)
			later(now.Add(retryAfter))
			continue
		}
		a.sent[st.Addr] = a.attrs
		if !ok {
			delete(a.heldLog, st.Addr)
			a.log.Info("bgp announce", "address", st.Addr, "vips", strings.Join(st.VIPs, ","))
			a.metrics.routeTransitions.WithLabelValues(st.Addr.String(), "announced").Inc()
		}
	}
	for _, addr := range slices.SortedFunc(maps.Keys(a.sent), netip.Addr.Compare) {
		if announce[addr] {
			continue
		}
		if err := a.sp.Withdraw(addr); err != nil {
			a.log.Error("bgp withdraw", "address", addr, "err", err)
			later(now.Add(retryAfter))
			continue
		}
		delete(a.sent, addr)
		why := "no VIP on the address any more"
		if i := slices.IndexFunc(states, func(s AddrState) bool { return s.Addr == addr }); i >= 0 {
			why = reasonsText(states[i].Held)
			a.heldLog[addr] = heldKey(states[i].Held)
		}
		a.log.Warn("bgp withdraw", "address", addr, "reason", why)
		a.metrics.routeTransitions.WithLabelValues(addr.String(), "withdrawn").Inc()
	}
	return next
}

// logHeld logs why an address that is not announced is held, when that changes (the
// announce delay alone is not worth a line).
func (a *Announcer) logHeld(st AddrState) {
	key := heldKey(st.Held)
	if key == a.heldLog[st.Addr] {
		return
	}
	a.heldLog[st.Addr] = key
	if key == "" {
		return
	}
	a.log.Warn("bgp held", "address", st.Addr, "reason", reasonsText(st.Held))
}

// heldKey names a set of reasons for logHeld, the announce delay left out.
func heldKey(rs []Reason) string {
	var codes []string
	for _, r := range rs {
		if r.Code != ReasonAnnounceDelay {
			codes = append(codes, r.String())
		}
	}
	return strings.Join(codes, "; ")
}

func reasonsText(rs []Reason) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, "; ")
}

func equalAttrs(a, b Attrs) bool { return a.MED == b.MED && slices.Equal(a.Communities, b.Communities) }

// Status reports the sessions and every address.
func (a *Announcer) Status() Status {
	peers := a.sp.Peers()
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{ASN: a.asn, RouterID: a.routerID.String(), Draining: a.draining, Peers: peers}
	for _, s := range a.states {
		as := AddressStatus{Address: s.Addr.String(), VIPs: s.VIPs, Announced: s.Announced, Since: s.Since,
			Held: s.Held, Pending: s.Pending}
		if a.draining && s.Announced {
			as.Pending = append(as.Pending, Reason{Code: ReasonShutdown, Detail: "draining: announced with GRACEFUL_SHUTDOWN (65535:0), withdrawn after shutdown_drain"})
		}
		if a.draining && !s.Announced {
			as.Held = []Reason{{Code: ReasonShutdown, Detail: "lbd is stopping"}}
		}
		st.Addresses = append(st.Addresses, as)
	}
	return st
}

// Shutdown drains: it re-announces every route with GRACEFUL_SHUTDOWN (65535:0, RFC 8326)
// so that routers move traffic to the other nodes, waits drain, withdraws every route and
// closes the sessions. Updates are ignored from the start. Nothing announced: nothing to
// wait for.
func (a *Announcer) Shutdown(drain time.Duration) {
	a.mu.Lock()
	if a.draining {
		a.mu.Unlock()
		return
	}
	a.draining = true
	close(a.done)
	a.mu.Unlock()
	<-a.loopEnded

	a.mu.Lock()
	addrs := slices.SortedFunc(maps.Keys(a.sent), netip.Addr.Compare)
	attrs := a.attrs
	a.mu.Unlock()
	if len(addrs) > 0 {
		gs := Attrs{MED: attrs.MED, Communities: append(slices.Clone(attrs.Communities), communityGracefulShutdown)}
		for _, addr := range addrs {
			if err := a.sp.Announce(addr, gs); err != nil {
				a.log.Error("bgp drain", "address", addr, "err", err)
			}
		}
		a.log.Info("bgp drain: routes re-announced with GRACEFUL_SHUTDOWN (65535:0); withdrawing after shutdown_drain",
			"addresses", len(addrs), "shutdown_drain", drain)
		time.Sleep(drain)
		for _, addr := range addrs {
			if err := a.sp.Withdraw(addr); err != nil {
				a.log.Error("bgp withdraw", "address", addr, "err", err)
			}
		}
		a.mu.Lock()
		clear(a.sent)
		a.mu.Unlock()
		a.log.Info("bgp drain: routes withdrawn", "addresses", len(addrs))
	}
	a.sp.Stop()
	a.reg.Unregister(a.metrics)
	a.log.Info("bgp sessions closed")
}
