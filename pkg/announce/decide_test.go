package announce

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	vip4 = netip.MustParseAddr("198.19.0.1")
	vip6 = netip.MustParseAddr("2001:db8:1::1")
)

func reason(code string, grace time.Duration) Reason {
	return Reason{Code: code, Detail: code + " detail", Grace: grace}
}

// step is one call of Decide: at (from the start), wanting reasons for vip4 (nil: announceable),
// and what must come out.
type step struct {
	at        time.Duration
	reasons   []Reason
	announced bool
	held      []string // codes
	pending   []string
	next      time.Duration // -1: no next decision
}

func runSteps(t *testing.T, delay time.Duration, steps []step) {
	t.Helper()
	start := time.Unix(1000, 0)
	d := &Decider{Delay: delay}
	for i, s := range steps {
		states, next := d.Decide(start.Add(s.at), []Wanted{{Addr: vip4, VIPs: []string{"web"}, Reasons: s.reasons}})
		if len(states) != 1 {
			t.Fatalf("step %d: %d states", i, len(states))
		}
		st := states[0]
		if st.Announced != s.announced || !slices.Equal(codes(st.Held), s.held) || !slices.Equal(codes(st.Pending), s.pending) {
			t.Errorf("step %d at %v: announced %v held %v pending %v; want %v %v %v", i, s.at,
				st.Announced, codes(st.Held), codes(st.Pending), s.announced, s.held, s.pending)
		}
		wantNext := time.Time{}
		if s.next >= 0 {
			wantNext = start.Add(s.next)
		}
		if !next.Equal(wantNext) {
			t.Errorf("step %d at %v: next decision at %v, want %v", i, s.at, next.Sub(start), s.next)
		}
	}
}

func codes(rs []Reason) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Code)
	}
	return out
}

func TestAnnounceDelay(t *testing.T) {
	const delay = 5 * time.Second
	runSteps(t, delay, []step{
		{at: 0, announced: false, held: []string{ReasonAnnounceDelay}, next: 5 * time.Second},
		{at: 4999 * time.Millisecond, announced: false, held: []string{ReasonAnnounceDelay}, next: 5 * time.Second},
		{at: 5 * time.Second, announced: true, next: -1},
		{at: 60 * time.Second, announced: true, next: -1},
	})
}

// A VIP that flaps faster than announce_delay is never announced: each time it goes bad
// the hold-down starts again.
func TestFlappingIsNeverAnnounced(t *testing.T) {
	const delay = 2 * time.Second
	bad := []Reason{reason(ReasonMinHealthy, 0)}
	var steps []step
	for i := range 20 {
		at := time.Duration(i) * 900 * time.Millisecond
		if i%2 == 0 {
			steps = append(steps, step{at: at, announced: false, held: []string{ReasonAnnounceDelay}, next: at + delay})
		} else {
			steps = append(steps, step{at: at, reasons: bad, announced: false, held: []string{ReasonMinHealthy}, next: -1})
		}
	}
	// then it stays good
	last := 20 * 900 * time.Millisecond
	steps = append(steps,
		step{at: last, announced: false, held: []string{ReasonAnnounceDelay}, next: last + delay},
		step{at: last + delay, announced: true, next: -1})
	runSteps(t, delay, steps)
}

func TestWithdrawIsImmediate(t *testing.T) {
	runSteps(t, time.Second, []step{
		{at: 0, held: []string{ReasonAnnounceDelay}, next: time.Second},
		{at: time.Second, announced: true, next: -1},
		{at: 10 * time.Second, reasons: []Reason{reason(ReasonMinHealthy, 0)}, held: []string{ReasonMinHealthy}, next: -1},
		// good again: the delay starts over
		{at: 11 * time.Second, held: []string{ReasonAnnounceDelay}, next: 12 * time.Second},
		{at: 12 * time.Second, announced: true, next: -1},
	})
}

// A reason with a grace period withdraws only once it has lasted that long, and a brief one
// withdraws nothing; it still holds an address that is not announced.
func TestGrace(t *testing.T) {
	rings := []Reason{reason(ReasonRingsDiffer, 3*time.Second)}
	runSteps(t, 0, []step{
		{at: 0, reasons: rings, held: []string{ReasonRingsDiffer}, next: -1},
		{at: time.Second, announced: true, next: -1},
		{at: 2 * time.Second, reasons: rings, announced: true, pending: []string{ReasonRingsDiffer}, next: 5 * time.Second},
		{at: 4 * time.Second, reasons: rings, announced: true, pending: []string{ReasonRingsDiffer}, next: 5 * time.Second},
		{at: 4500 * time.Millisecond, announced: true, next: -1}, // converged in time
		{at: 6 * time.Second, reasons: rings, announced: true, pending: []string{ReasonRingsDiffer}, next: 9 * time.Second},
		{at: 9 * time.Second, reasons: rings, held: []string{ReasonRingsDiffer}, next: -1},
	})
}

// A tie (Grace Forever) keeps an announced address and holds one that is not.
func TestForever(t *testing.T) {
	tie := []Reason{reason(ReasonConfigDiffers, Forever)}
	runSteps(t, 0, []step{
		{at: 0, announced: true, next: -1},
		{at: time.Hour, reasons: tie, announced: true, pending: []string{ReasonConfigDiffers}, next: -1},
		{at: 2 * time.Hour, reasons: []Reason{tie[0], reason(ReasonMinHealthy, 0)}, held: []string{ReasonConfigDiffers, ReasonMinHealthy}, next: -1},
		{at: 3 * time.Hour, reasons: tie, held: []string{ReasonConfigDiffers}, next: -1},
	})
}

// Addresses are decided apart, come out sorted, and are forgotten when no longer wanted.
func TestAddresses(t *testing.T) {
	start := time.Unix(1000, 0)
	d := &Decider{Delay: time.Second}
	d.Decide(start, []Wanted{{Addr: vip6}, {Addr: vip4, Reasons: []Reason{reason(ReasonDataplane, 0)}}})
	states, _ := d.Decide(start.Add(time.Second), []Wanted{{Addr: vip6}, {Addr: vip4}})
	if len(states) != 2 || states[0].Addr != vip4 || states[1].Addr != vip6 {
		t.Fatalf("states %+v", states)
	}
	if states[0].Announced || !states[1].Announced {
		t.Errorf("vip4 announced %v (want false: good for 0s), vip6 %v (want true)", states[0].Announced, states[1].Announced)
	}
	states, _ = d.Decide(start.Add(2*time.Second), []Wanted{{Addr: vip4}})
	if len(states) != 1 || len(d.entries) != 1 {
		t.Errorf("vip6 not forgotten: %+v", states)
	}
	// wanted again later, it starts over
	states, _ = d.Decide(start.Add(3*time.Second), []Wanted{{Addr: vip4}, {Addr: vip6}})
	if states[1].Announced || !states[1].Since.Equal(start.Add(3*time.Second)) {
		t.Errorf("vip6 came back announced or with an old since: %+v", states[1])
	}
}

// A reason whose key keeps changing (rings converging while a backend flaps) never withdraws;
// once it stays the same for its grace, it does.
func TestGraceRestartsOnANewKey(t *testing.T) {
	rings := func(key string) []Reason {
		return []Reason{{Code: ReasonRingsDiffer, Detail: "x", Grace: 3 * time.Second, Key: key}}
	}
	var steps []step
	steps = append(steps, step{at: 0, announced: true, next: -1})
	for i := 1; i <= 10; i++ { // a new difference every second, for ten seconds
		at := time.Duration(i) * time.Second
		steps = append(steps, step{at: at, reasons: rings(fmt.Sprint(i)), announced: true,
			pending: []string{ReasonRingsDiffer}, next: at + 3*time.Second})
	}
	steps = append(steps,
		step{at: 12 * time.Second, reasons: rings("10"), announced: true, pending: []string{ReasonRingsDiffer}, next: 13 * time.Second},
		step{at: 13 * time.Second, reasons: rings("10"), held: []string{ReasonRingsDiffer}, next: -1})
	runSteps(t, 0, steps)
}
