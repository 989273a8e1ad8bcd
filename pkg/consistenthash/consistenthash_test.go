package consistenthash

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// algorithms lists every algorithm Build knows; property tests run on each.
var algorithms = []Algorithm{Maglev, Rendezvous, RendezvousSlack}

func members(n int, weight func(i int) uint32) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{Key: fmt.Sprintf("198.18.%d.%d:80", i/250, i%250+1), Weight: weight(i)}
	}
	return ms
}

func equal(int) uint32 { return 1 }

// mixed weights 1..10, fixed per member.
func mixed(i int) uint32 { return uint32(i*7%10 + 1) }

func mustBuild(tb testing.TB, alg Algorithm, ms []Member, size uint32) []uint32 {
	tb.Helper()
	t, err := Build(alg, ms, size)
	if err != nil {
		tb.Fatalf("Build(%s, %d members, %d): %v", alg, len(ms), size, err)
	}
	return t
}

// keys turns a table into the Key owning each slot, which is comparable across member lists.
func keys(ms []Member, table []uint32) []string {
	out := make([]string, len(table))
	for i, m := range table {
		out[i] = ms[m].Key
	}
	return out
}

func counts(ms []Member, table []uint32) []int {
	c := make([]int, len(ms))
	for _, m := range table {
		c[m]++
	}
	return c
}

func moved(a, b []string) float64 {
	var n int
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return float64(n) / float64(len(a))
}

// Maglev's and Rendezvous' promise; RendezvousSlack's is in TestRendezvousAddOneAndBalance.
func TestBalanceEqualWeights(t *testing.T) {
	for _, alg := range []Algorithm{Maglev, Rendezvous} {
		for _, n := range []int{1, 2, 3, 10, 100, 655} {
			ms := members(n, equal)
			c := counts(ms, mustBuild(t, alg, ms, DefaultSize))
			lo, hi := math.MaxInt, 0
			for _, x := range c {
				lo, hi = min(lo, x), max(hi, x)
			}
			if hi-lo > 1 {
				t.Errorf("%s N=%d: slots per member range [%d, %d], want max-min <= 1", alg, n, lo, hi)
			}
		}
	}
}

// Maglev and Rendezvous give every member its exact share rounded: |slots - size·w/Σw| < 1.
// RendezvousSlack keeps every member at or below its cap, max(round(share), ⌊1.01·share⌋), and
// (measured, see the grid) above 0.75 × share.
func TestWeightsRespected(t *testing.T) {
	for _, alg := range algorithms {
		for _, tc := range []struct {
			name string
			ms   []Member
		}{
			{"mixed1-10", members(500, mixed)},
			{"large", members(50, func(i int) uint32 { return uint32(1_000_000 + i*123_457) })},
			{"with-drained", members(200, func(i int) uint32 { return uint32(i % 3) })},
			{"two", []Member{{"a", 1}, {"b", 3}}},
		} {
			c := counts(tc.ms, mustBuild(t, alg, tc.ms, DefaultSize))
			var total float64
			for _, m := range tc.ms {
				total += float64(m.Weight)
			}
			for i, m := range tc.ms {
				want := float64(DefaultSize) * float64(m.Weight) / total
				lo, hi := want-1, want+1
				if alg == RendezvousSlack {
					lo, hi = 0.75*want-1, max(math.Floor(1.01*want), math.Round(want))
				}
				if got := float64(c[i]); got <= lo && m.Weight > 0 || got > hi || m.Weight == 0 && got != 0 {
					t.Errorf("%s %s: member %s weight %d has %d slots, share %.2f, want in (%.2f, %.2f]", alg, tc.name, m.Key, m.Weight, c[i], want, lo, hi)
				}
			}
		}
	}
}

func TestTinyWeightGetsASlot(t *testing.T) {
	for _, alg := range algorithms {
		ms := []Member{{"heavy", math.MaxUint32}, {"light", 1}, {"drained", 0}}
		c := counts(ms, mustBuild(t, alg, ms, DefaultSize))
		if c[1] != 1 || c[2] != 0 || c[0] != int(DefaultSize)-1 {
			t.Errorf("%s: slots %v, want [%d 1 0]", alg, c, DefaultSize-1)
		}
	}
}

// golden is SHA-256 over "slot key\n" lines of goldenMembers' table per algorithm. If it
// changes, every LB node running an older lbd would disagree with the new one: do not update
// it casually.
var golden = map[Algorithm]string{
	Maglev:          "814beaf4e69313e8cabe1ba24e5e9aedba6af35b864c948c54119c810b47bae8",
	Rendezvous:      "cec978fa6916a391dbcdfcc04139b952a3d61b291ff2d6c6a5808209b2f48cc7",
	RendezvousSlack: "de88b3dc990d7d1cedb48e1f73bc48cb5802f034232d0ac627f8d14427fbbbe9",
}

func goldenMembers() []Member {
	return members(37, mixed)
}

func tableDigest(ms []Member, table []uint32) string {
	h := sha256.New()
	for i, m := range table {
		fmt.Fprintf(h, "%d %s\n", i, ms[m].Key)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestGoldenDigest(t *testing.T) {
	for _, alg := range algorithms {
		ms := goldenMembers()
		got := tableDigest(ms, mustBuild(t, alg, ms, DefaultSize))
		if got != golden[alg] {
			t.Errorf("%s: table digest %s, want %s", alg, got, golden[alg])
		}
	}
}

func TestOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, alg := range algorithms {
		ms := members(300, mixed)
		ms[7].Weight = 0
		want := keys(ms, mustBuild(t, alg, ms, DefaultSize))
		for range 3 {
			sh := append([]Member(nil), ms...)
			rng.Shuffle(len(sh), func(i, j int) { sh[i], sh[j] = sh[j], sh[i] })
			got := keys(sh, mustBuild(t, alg, sh, DefaultSize))
			if f := moved(want, got); f != 0 {
				t.Fatalf("%s: shuffled input moves %.4f of slots, want 0", alg, f)
			}
		}
	}
}

// Listing a drained member or not makes no difference to the table.
func TestDrainedIsInvisible(t *testing.T) {
	for _, alg := range algorithms {
		ms := members(50, equal)
		with := append(append([]Member(nil), ms...), Member{"drained", 0})
		a := keys(ms, mustBuild(t, alg, ms, DefaultSize))
		b := keys(with, mustBuild(t, alg, with, DefaultSize))
		if f := moved(a, b); f != 0 {
			t.Errorf("%s: adding a drained member moved %.4f of slots", alg, f)
		}
	}
}

func TestErrors(t *testing.T) {
	ok := members(3, equal)
	for _, tc := range []struct {
		name string
		alg  Algorithm
		ms   []Member
		size uint32
		want error
	}{
		{"nil", Maglev, nil, DefaultSize, ErrNoMembers},
		{"all zero", Maglev, []Member{{"a", 0}, {"b", 0}}, DefaultSize, ErrAllWeightsZero},
		{"duplicate", Maglev, []Member{{"a", 1}, {"b", 1}, {"a", 2}}, DefaultSize, ErrDuplicateKey},
		{"duplicate drained", Maglev, []Member{{"a", 1}, {"a", 0}}, DefaultSize, ErrDuplicateKey},
		{"not prime", Maglev, ok, 65536, ErrSizeNotPrime},
		{"zero size", Maglev, ok, 0, ErrSizeNotPrime},
		{"too small", Maglev, ok, 293, ErrSizeTooSmall}, // 293 is prime, <= 300
		{"too small N=656", Maglev, members(656, equal), 65537, ErrSizeTooSmall},
		{"unknown", Algorithm("ketama"), ok, DefaultSize, ErrUnknownAlgorithm},
	} {
		_, err := Build(tc.alg, tc.ms, tc.size)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
	// Drained members do not count toward the size limit.
	ms := append(members(2, equal), members(1000, func(int) uint32 { return 0 })[2:]...)
	if _, err := Build(Maglev, ms, 307); err != nil {
		t.Errorf("2 active + 998 drained in 307 slots: %v", err)
	}
}

// Removing one of N equal members moves its own 1/N of the slots plus some collateral. The
// bounds are on the moved fraction as a multiple of 1/N, worst of three removals (measured at
// N = 10, 100, 500 in 65537 slots: Maglev 1.02, 1.56, 6.04; Rendezvous 1.01, 1.35, 3.17;
// RendezvousSlack 1.00, 1.24, 2.29).
func TestDisruptionRemoveOne(t *testing.T) {
	for _, tc := range []struct {
		alg Algorithm
		n   int
		max float64
	}{
		{Maglev, 10, 1.05},
		{Maglev, 100, 1.8},
		{Maglev, 500, 7.0},
		{Rendezvous, 10, 1.05},
		{Rendezvous, 100, 1.45},
		{Rendezvous, 500, 4.0},
		{RendezvousSlack, 10, 1.02},
		{RendezvousSlack, 100, 1.3},
		{RendezvousSlack, 500, 2.3},
	} {
		ms := members(tc.n, equal)
		before := keys(ms, mustBuild(t, tc.alg, ms, DefaultSize))
		var worst float64
		for _, gone := range []int{0, tc.n / 2, tc.n - 1} {
			rest := append(append([]Member(nil), ms[:gone]...), ms[gone+1:]...)
			after := keys(rest, mustBuild(t, tc.alg, rest, DefaultSize))
			f := moved(before, after) * float64(tc.n)
			// every slot of the removed member must move.
			var own int
			for _, k := range before {
				if k == ms[gone].Key {
					own++
				}
			}
			if f*float64(DefaultSize) < float64(own*tc.n) {
				t.Errorf("%s N=%d: moved %.3f/N, fewer than the removed member's slots", tc.alg, tc.n, f)
			}
			worst = max(worst, f)
		}
		t.Logf("%s N=%d remove 1: worst moved %.3f/N", tc.alg, tc.n, worst)
		if worst > tc.max {
			t.Errorf("%s N=%d remove 1: moved %.3f/N, want <= %.2f/N", tc.alg, tc.n, worst, tc.max)
		}
	}
}

// From 100 members up, both Rendezvous variants move fewer slots than Maglev when one member
// joins. Rendezvous is as balanced as Maglev; RendezvousSlack keeps max/mean slots per unit of
// weight within 1% (min/mean: measured 0.79 at worst here, asserted >= 0.75).
func TestRendezvousAddOneAndBalance(t *testing.T) {
	for _, n := range []int{10, 100, 300} {
		ms := members(n+1, equal)
		movedBy := map[Algorithm]float64{}
		for _, alg := range algorithms {
			a := keys(ms[:n], mustBuild(t, alg, ms[:n], DefaultSize))
			b := keys(ms, mustBuild(t, alg, ms, DefaultSize))
			movedBy[alg] = moved(a, b) * float64(n+1)
		}
		t.Logf("N=%d add 1: moved ×min: %v", n, movedBy)
		for _, alg := range []Algorithm{Rendezvous, RendezvousSlack} {
			if n >= 100 && movedBy[alg] >= movedBy[Maglev] || movedBy[alg] > map[int]float64{10: 1.05, 100: 1.35, 300: 2.3}[n] {
				t.Errorf("N=%d add 1: %s moved %.3f × min, maglev %.3f", n, alg, movedBy[alg], movedBy[Maglev])
			}
		}
		for _, w := range []func(int) uint32{equal, mixed} {
			ms := members(n, w)
			if hi, lo := balance(ms, mustBuild(t, RendezvousSlack, ms, DefaultSize)); hi > 1.01 || lo < 0.75 {
				t.Errorf("N=%d: %s slots per unit weight over mean in [%.4f, %.4f], want [0.75, 1.01]", n, RendezvousSlack, lo, hi)
			}
			hiM, loM := balance(ms, mustBuild(t, Maglev, ms, DefaultSize))
			if hi, lo := balance(ms, mustBuild(t, Rendezvous, ms, DefaultSize)); hi != hiM || lo != loM {
				t.Errorf("N=%d: %s slots per unit weight over mean in [%.4f, %.4f], Maglev's [%.4f, %.4f]", n, Rendezvous, lo, hi, loM, hiM)
			}
		}
	}
}

// BenchmarkBuild includes N=1000 in 65537 slots, which Build refuses (too small for the balance
// promise) but which is the Maglev paper's reference point for build time. cpu-ns/op is the
// thread's CPU time: on a shared machine wall time also counts waiting for a core.
func BenchmarkBuild(b *testing.B) {
	for _, alg := range algorithms {
		for _, n := range []int{100, 1000} {
			for _, w := range []struct {
				name string
				f    func(int) uint32
			}{{"equal", equal}, {"mixed", mixed}} {
				ms := members(n, w.f)
				b.Run(fmt.Sprintf("%s/N=%d/M=%d/%s", alg, n, DefaultSize, w.name), func(b *testing.B) {
					b.ReportAllocs()
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					start := threadCPU()
					for b.Loop() {
						if _, err := build(alg, ms, DefaultSize, false); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(threadCPU()-start)/float64(b.N), "cpu-ns/op")
				})
			}
		}
	}
}

// Every algorithm Algorithms lists builds a ring, the default first; an empty name means the
// default and any other name stays as it is.
func TestAlgorithms(t *testing.T) {
	algs := Algorithms()
	if len(algs) == 0 || algs[0] != DefaultAlgorithm {
		t.Fatalf("Algorithms() = %v, want DefaultAlgorithm (%s) first", algs, DefaultAlgorithm)
	}
	for _, a := range algs {
		if _, err := Build(a, members(3, equal), 1009); err != nil {
			t.Errorf("%s: %v", a, err)
		}
		if a.OrDefault() != a {
			t.Errorf("%s.OrDefault() = %s", a, a.OrDefault())
		}
	}
	if got := Algorithm("").OrDefault(); got != DefaultAlgorithm {
		t.Errorf(`"".OrDefault() = %q, want %q`, got, DefaultAlgorithm)
	}
}
