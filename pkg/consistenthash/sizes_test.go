package consistenthash

import (
	"fmt"
	"testing"
)

// Every size is prime (Build refuses others), the list grows, and DefaultSize comes first.
func TestSizesArePrimeAndGrow(t *testing.T) {
	s := Sizes()
	if s[0] != DefaultSize {
		t.Errorf("first size %d, want DefaultSize %d", s[0], DefaultSize)
	}
	for i, n := range s {
		if !IsPrime(n) {
			t.Errorf("size %d is not prime", n)
		}
		if i > 0 && n <= s[i-1] {
			t.Errorf("sizes not increasing: %d after %d", n, s[i-1])
		}
	}
}

func TestSizeFor(t *testing.T) {
	for _, c := range []struct {
		active int
		want   uint32
		ok     bool
	}{
		{0, 65537, true},
		{1, 65537, true},
		{655, 65537, true},   // 65500 < 65537
		{656, 131071, true},  // 65600 > 65537
		{1000, 131071, true}, // 100000
		{1310, 131071, true},
		{1311, 262147, true},
		{5000, 524287, true},
		{6000, 655373, true},
		{10485, 1048573, true}, // 1048500 < 1048573
		{10486, 0, false},
	} {
		got, ok := SizeFor(c.active)
		if got != c.want || ok != c.ok {
			t.Errorf("SizeFor(%d) = %d, %v; want %d, %v", c.active, got, ok, c.want, c.ok)
		}
	}
}

// The size SizeFor picks is one Build accepts, and at 1000 equal members it keeps the 1%
// balance (max − min slots per member within 1% of the mean).
func TestSizeForBuildsBalancedRing(t *testing.T) {
	const n = 1000
	size, ok := SizeFor(n)
	if !ok {
		t.Fatal("no size for 1000 members")
	}
	members := make([]Member, n)
	for i := range members {
		members[i] = Member{Key: fmt.Sprintf("198.19.%d.%d", i/250, i%250+1), Weight: 1}
	}
	table, err := Build(DefaultAlgorithm, members, size)
	if err != nil {
		t.Fatalf("Build(%d members, %d slots): %v", n, size, err)
	}
	if _, err := Build(DefaultAlgorithm, members, DefaultSize); err == nil {
		t.Fatalf("Build accepted %d members in %d slots: SizeFor's step is not needed", n, DefaultSize)
	}
	count := make([]int, n)
	for _, i := range table {
		count[i]++
	}
	lo, hi := count[0], count[0]
	for _, c := range count {
		lo, hi = min(lo, c), max(hi, c)
	}
	mean := float64(size) / n
	if float64(hi-lo) > 0.01*mean {
		t.Errorf("slots per member %d..%d, more than 1%% of the mean %.1f apart", lo, hi, mean)
	}
}
