package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A next hop that does not resolve is warned about once, retried on later builds, and
// its recovery is logged once.
func TestNextHopRetriedAndLoggedOnce(t *testing.T) {
	var logs bytes.Buffer
	r := resolverFor("198.18.0.11", "198.18.0.12")
	d, _ := newTestDaemon(t, r)
	d.log = slog.New(slog.NewTextHandler(&logs, nil))
	cfg := mustParse(t, testConfig)
	for range 3 {
		served(t, d, cfg)
	}
	if n := r.callsFor(addr("198.18.0.13")); n != 3 {
		t.Errorf(".13 resolved %d times in 3 builds, want 3 (retried each time)", n)
	}
	if n := r.callsFor(addr("198.18.0.11")); n != 1 {
		t.Errorf(".11 resolved %d times in 3 builds, want 1 (kept)", n)
	}
	r.set(addr("198.18.0.13"), hop("198.18.0.13"))
	served(t, d, cfg)
	served(t, d, cfg)
	if got := strings.Count(logs.String(), `msg="backend next hop unresolved: treated as down" backend=198.18.0.13`); got != 1 {
		t.Errorf("%d warnings for .13:\n%s", got, logs.String())
	}
	if got := strings.Count(logs.String(), `msg="backend next hop resolved" backend=198.18.0.13 mac=02:00:00:00:00:0d`); got != 1 {
		t.Errorf("%d recoveries logged for .13:\n%s", got, logs.String())
	}
}

// refreshNextHops does nothing while every next hop is resolved and fresh, and rewrites
// nothing when a retry changes nothing. (A change rewrites the data path: the end-to-end
// tests cover that.)
func TestRefreshNextHopsWithoutChange(t *testing.T) {
	ctx := context.Background()
	r := resolverFor("198.18.0.11", "198.18.0.12", "198.18.0.13")
	d, _ := newTestDaemon(t, r)
	if err := d.refreshNextHops(ctx); err != nil { // no config yet
		t.Fatal(err)
	}
	served(t, d, mustParse(t, testConfig))
	if err := d.refreshNextHops(ctx); err != nil {
		t.Fatal(err)
	}
	if n := r.callsFor(addr("198.18.0.11")); n != 1 {
		t.Errorf("all resolved and fresh: .11 resolved %d times, want 1", n)
	}

	// a full refresh is due: every next hop is asked again, and the same answers change nothing
	d.mu.Lock()
	d.resolvedAt = time.Now().Add(-resolveRefresh)
	before := d.vips
	d.mu.Unlock()
	if err := d.refreshNextHops(ctx); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := r.callsFor(addr("198.18.0.11")); n != 2 {
		t.Errorf("refresh due: .11 resolved %d times, want 2", n)
	}
	if time.Since(d.resolvedAt) > time.Minute || &d.vips[0] != &before[0] {
		t.Error("the refresh did not restart the clock, or replaced the served views though nothing changed")
	}
}

func TestSameNextHops(t *testing.T) {
	d, _ := newTestDaemon(t, resolverFor("198.18.0.11", "198.18.0.12"))
	a := served(t, d, mustParse(t, testConfig))
	d, _ = newTestDaemon(t, resolverFor("198.18.0.11", "198.18.0.12"))
	b := served(t, d, mustParse(t, testConfig))
	if !sameNextHops(a, b) {
		t.Error("two builds with the same answers differ")
	}
	d, _ = newTestDaemon(t, resolverFor("198.18.0.11", "198.18.0.12", "198.18.0.13"))
	if c := served(t, d, mustParse(t, testConfig)); sameNextHops(a, c) {
		t.Error("a backend that resolved is not a change")
	}
	r := resolverFor("198.18.0.11", "198.18.0.12")
	moved := hop("198.18.0.12")
	moved.DstMAC[5] = 0x99
	r.set(addr("198.18.0.12"), moved)
	d, _ = newTestDaemon(t, r)
	if c := served(t, d, mustParse(t, testConfig)); sameNextHops(a, c) {
		t.Error("a changed MAC is not a change")
	}
	if sameNextHops(a, a[:1]) {
		t.Error("a VIP fewer is not a change")
	}
}
