package announce

// Deciding, per address, whether it is announced: the hold-down before announcing, the
// immediate withdraw, and reasons that withdraw only after a grace period.

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// Codes of the reasons an address is held, as lbd_bgp_held's reason label shows them.
const (
	// ReasonDataplane: xdp_lb is not attached, or a VIP on the address is not written into
	// its maps.
	ReasonDataplane = "dataplane"
	// ReasonMinHealthy: a VIP on the address has fewer than min_healthy backends in its ring.
	ReasonMinHealthy = "min_healthy"
	// ReasonConfigDiffers: this node's config digest is not that of a majority of the live
	// LB nodes.
	ReasonConfigDiffers = "config_differs"
	// ReasonRingsDiffer: this node's rings are not those of a majority of the live LB nodes.
	ReasonRingsDiffer = "rings_differ"
	// ReasonJoining: the node has not yet tried to join its cluster, so it cannot tell
	// whether it agrees with the others.
	ReasonJoining = "cluster_joining"
	// ReasonNoPeer: no BGP peer of the address's family is configured.
	ReasonNoPeer = "no_peer"
	// ReasonAnnounceDelay: announceable, for less than announce_delay so far.
	ReasonAnnounceDelay = "announce_delay"
	// ReasonShutdown: lbd is stopping.
	ReasonShutdown = "shutdown"
)

// Forever as a Reason's Grace: the reason never withdraws an announced address, it only keeps
// one that is not announced from being announced.
const Forever time.Duration = math.MaxInt64

// Reason is one thing that keeps an address from being announced.
type Reason struct {
	Code   string `json:"code"`   // one of the Reason* codes
	Detail string `json:"detail"` // for people: which VIP, which numbers
	// Grace: an announced address is withdrawn only once the reason has held this long (0:
	// at once; Forever: never), unchanged: a new Key starts the grace again, so that only a
	// difference that stays the same withdraws (rings that keep changing while a backend
	// flaps are converging, not diverging). An address that is not announced is held by it
	// at once.
	Grace time.Duration `json:"-"`
	Key   string        `json:"-"`
}

func (r Reason) String() string { return r.Code + ": " + r.Detail }

// Wanted is an address the daemon serves VIPs on, and what keeps it from being announced.
type Wanted struct {
	Addr    netip.Addr
	VIPs    []string // the VIPs on it, for status
	Reasons []Reason // none: announceable
}

// AddrState is one address as decided.
type AddrState struct {
	Addr      netip.Addr
	VIPs      []string
	Announced bool
	Since     time.Time // when it was last announced or withdrawn (or first seen)
	// Held: why it is not announced. Pending: reasons an announced address has had for less
	// than their grace; it is withdrawn if they last.
	Held    []Reason
	Pending []Reason
}

// Decider turns what the daemon wants, over time, into what is announced. The zero value
// is ready, with no announce delay.
type Decider struct {
	Delay   time.Duration // an address must be announceable this long before it is announced
	entries map[netip.Addr]*entry
}

type entry struct {
	announced bool
	since     time.Time
	ready     time.Time            // since when it has been announceable; zero: it is not
	first     map[string]time.Time // reason code → since when it has held, with the same key
	key       map[string]string    // reason code → its key
}

// Decide returns, at now, the state of every wanted address, sorted by address, and when
// to decide again (zero: nothing pending). Addresses no longer wanted are forgotten: the
// caller withdraws them.
func (d *Decider) Decide(now time.Time, want []Wanted) (states []AddrState, next time.Time) {
	if d.entries == nil {
		d.entries = map[netip.Addr]*entry{}
	}
	seen := map[netip.Addr]bool{}
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, w := range want {
		if seen[w.Addr] {
			continue
		}
		seen[w.Addr] = true
		e := d.entries[w.Addr]
		if e == nil {
			e = &entry{since: now, first: map[string]time.Time{}, key: map[string]string{}}
			d.entries[w.Addr] = e
		}
		st := AddrState{Addr: w.Addr, VIPs: w.VIPs}

		// how long has each reason held, unchanged?
		codes := map[string]bool{}
		for _, r := range w.Reasons {
			codes[r.Code] = true
			if _, ok := e.first[r.Code]; !ok || e.key[r.Code] != r.Key {
				e.first[r.Code], e.key[r.Code] = now, r.Key
			}
		}
		for code := range e.first {
			if !codes[code] {
				delete(e.first, code)
				delete(e.key, code)
			}
		}

		if e.announced {
			var withdraw []Reason
			for _, r := range w.Reasons {
				held := now.Sub(e.first[r.Code])
				switch {
				case r.Grace == Forever:
					st.Pending = append(st.Pending, r)
				case held >= r.Grace:
					withdraw = append(withdraw, r)
				default:
					st.Pending = append(st.Pending, r)
					later(e.first[r.Code].Add(r.Grace))
				}
			}
			if len(withdraw) > 0 {
				e.announced, e.since, e.ready = false, now, time.Time{}
				st.Held, st.Pending = w.Reasons, nil
			}
		} else if len(w.Reasons) > 0 {
			e.ready = time.Time{}
			st.Held = w.Reasons
		} else {
			if e.ready.IsZero() {
				e.ready = now
			}
			if waited := now.Sub(e.ready); waited < d.Delay {
				st.Held = []Reason{{Code: ReasonAnnounceDelay,
					Detail: fmt.Sprintf("announceable for %v of announce_delay %v", waited.Round(time.Millisecond), d.Delay)}}
				later(e.ready.Add(d.Delay))
			} else {
				e.announced, e.since = true, now
			}
		}
		st.Announced, st.Since = e.announced, e.since
		states = append(states, st)
	}
	for a := range d.entries {
		if !seen[a] {
			delete(d.entries, a)
		}
	}
	slices.SortFunc(states, func(a, b AddrState) int { return a.Addr.Compare(b.Addr) })
	return states, next
}
