package consistenthash

import (
	"fmt"
	"slices"
	"testing"
)

// The tails of fillRendezvous and fillMaglev compute what walking on would give; check it does, exactly.
func TestTailSameAsWalking(t *testing.T) {
	for _, tc := range []struct {
		n    int
		w    func(int) uint32
		size uint32
	}{
		{1, equal, 65537}, {7, equal, 65537}, {100, equal, 65537}, {300, mixed, 65537},
		{1000, equal, 65537}, {40, func(i int) uint32 { return uint32(i*i + 1) }, 10007},
		{50, func(i int) uint32 { return uint32(1 + i%2*1000) }, 65537},
	} {
		ms := members(tc.n, tc.w)
		for _, slack := range []uint64{0, 1, 5} {
			name := fmt.Sprintf("N=%d/M=%d/slack=%d", tc.n, tc.size, slack)
			a, err := newRing(ms, tc.size, false)
			if err != nil {
				t.Fatal(err)
			}
			a.fillRendezvous(slack)
			b, _ := newRing(ms, tc.size, false)
			b.noTail = true
			b.fillRendezvous(slack)
			if !slices.Equal(a.table, b.table) {
				t.Errorf("%s: tail differs from walking", name)
			}
		}
		a, _ := newRing(ms, tc.size, false)
		a.fillMaglev()
		b, _ := newRing(ms, tc.size, false)
		b.noTail = true
		b.fillMaglev()
		if !slices.Equal(a.table, b.table) {
			t.Errorf("N=%d/M=%d maglev: tail differs from walking", tc.n, tc.size)
		}
	}
}

// Scanning the weight classes and keeping them in a heap must order the steps the same way.
func TestScanSameAsHeap(t *testing.T) {
	defer func(m int) { maxScan = m }(maxScan)
	for _, w := range []func(int) uint32{mixed, func(i int) uint32 { return uint32(i%5*3 + 1) }, func(i int) uint32 { return uint32(1 + i%2*1000) }} {
		ms := members(200, w)
		for _, alg := range []Algorithm{Rendezvous, RendezvousSlack} {
			maxScan = 16
			a := mustBuild(t, alg, ms, DefaultSize)
			maxScan = 0
			b := mustBuild(t, alg, ms, DefaultSize)
			if !slices.Equal(a, b) {
				t.Errorf("%s: heap and scan give different tables", alg)
			}
		}
	}
}
