package backends

import (
	"net/netip"
	"testing"

	"github.com/lbdproj/lbd/pkg/consistenthash"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestStateOf(t *testing.T) {
	for _, c := range []struct {
		b    Backend
		want State
	}{
		{Backend{Weight: 1, Healthy: true}, Active},
		{Backend{Weight: 0, Healthy: true}, Draining},
		{Backend{Weight: 5, Healthy: false}, Down},
		{Backend{Weight: 0, Healthy: false}, Down}, // down wins: its flows must move
	} {
		if got := StateOf(c.b); got != c.want {
			t.Errorf("StateOf(%+v) = %s, want %s", c.b, got, c.want)
		}
	}
}

// The ring indexes the caller's slice, holds only active backends, and is the same table the
// ring package builds over the active ones alone: a drained or down backend listed or not
// makes no difference to who owns a slot.
func TestRingOverActiveBackends(t *testing.T) {
	bs := []Backend{
		{Addr: addr("198.18.0.11"), Weight: 1, Healthy: true},
		{Addr: addr("198.18.0.12"), Weight: 0, Healthy: true}, // draining
		{Addr: addr("198.18.0.13"), Weight: 2, Healthy: true},
		{Addr: addr("198.18.0.14"), Weight: 1, Healthy: false}, // down
	}
	const size = 1009
	ring, err := Ring(consistenthash.DefaultAlgorithm, bs, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(ring) != size {
		t.Fatalf("ring has %d slots, want %d", len(ring), size)
	}
	shares := Shares(bs, ring)
	if shares[bs[1].Addr] != 0 || shares[bs[3].Addr] != 0 {
		t.Fatalf("drained or down backends own slots: %v", shares)
	}
	// weights 1:2 over 1009 slots: exact shares by largest remainder
	if shares[bs[0].Addr] != 336 || shares[bs[2].Addr] != 673 {
		t.Fatalf("shares %v, want 336 and 673", shares)
	}
	alone, err := Ring(consistenthash.DefaultAlgorithm, []Backend{bs[0], bs[2]}, size)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ring {
		if bs[ring[i]].Addr != []Backend{bs[0], bs[2]}[alone[i]].Addr {
			t.Fatalf("slot %d differs from the ring of the active backends alone", i)
		}
	}
}

func TestRingWithNoActiveBackendIsEmpty(t *testing.T) {
	ring, err := Ring(consistenthash.DefaultAlgorithm, []Backend{{Addr: addr("198.18.0.11"), Weight: 1}}, 1009)
	if err != nil || ring != nil {
		t.Fatalf("ring %v, err %v: want an empty ring and no error (the VIP then drops and counts)", ring, err)
	}
}

func TestRingRefusesWhatTheRingPackageRefuses(t *testing.T) {
	bs := []Backend{{Addr: addr("198.18.0.11"), Weight: 1, Healthy: true}}
	if _, err := Ring(consistenthash.DefaultAlgorithm, bs, 1000); err == nil {
		t.Fatal("a non-prime ring size was accepted")
	}
}
