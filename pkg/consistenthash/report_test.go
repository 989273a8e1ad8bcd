package consistenthash

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// go test ./pkg/consistenthash -run TestReport -report prints the quality grid (README.md).
var report = flag.Bool("report", false, "print the consistent hashing quality grid")

// variant is one algorithm in the report: the public ones and the points of the trade-off
// curve, which differ from Rendezvous only in the slack.
type variant struct {
	name string
	fill func(*ring)
}

func rendezvousWithSlack(p uint64) variant {
	return variant{fmt.Sprintf("rendezvous slack %d%%", p), func(r *ring) { r.fillRendezvous(p) }}
}

var (
	maglevVariant     = variant{string(Maglev), (*ring).fillMaglev}
	rendezvousVariant = variant{string(Rendezvous), func(r *ring) { r.fillRendezvous(0) }}
	slackVariant      = variant{string(RendezvousSlack), func(r *ring) { r.fillRendezvous(RendezvousSlackPercent) }}
)

// gridMember names member i; the same i always gets the same key, so sets can be compared.
func gridMember(i int, mixedWeights bool) Member {
	m := Member{Key: fmt.Sprintf("2001:db8::%x:%x", i>>16, i&0xffff), Weight: 1}
	if mixedWeights {
		m.Weight = uint32(i*7%10 + 1) // 1..10
	}
	return m
}

func gridMembers(n int, mixedWeights bool) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = gridMember(i, mixedWeights)
	}
	return ms
}

// change is one edit of a member set in the grid.
type change struct {
	name  string
	apply func(ms []Member, mixed bool) []Member
}

func without(ms []Member, drop func(i int) bool) []Member {
	var out []Member
	for i, m := range ms {
		if !drop(i) {
			out = append(out, m)
		}
	}
	return out
}

// Each change is tried at three places in the set (averaged) so that one lucky or unlucky
// member does not decide a cell.
func gridChanges(at int) []change {
	return []change{
		{"remove 1", func(ms []Member, _ bool) []Member {
			k := at * len(ms) / 3
			return without(ms, func(i int) bool { return i == k })
		}},
		{"remove 1%", func(ms []Member, _ bool) []Member {
			step := 100
			if len(ms) < 100 {
				step = len(ms) // one member
			}
			return without(ms, func(i int) bool { return i%step == at%step })
		}},
		{"add 1", func(ms []Member, mixed bool) []Member {
			return append(append([]Member(nil), ms...), gridMember(len(ms)+at, mixed))
		}},
		{"weight ×2", func(ms []Member, _ bool) []Member {
			out := append([]Member(nil), ms...)
			out[at*len(ms)/3].Weight *= 2
			return out
		}},
	}
}

// minMoved is the least fraction of slots any table must move for the change: the total
// variation distance between the old and new shares of weight.
func minMoved(old, new []Member) float64 {
	share := func(ms []Member) map[string]float64 {
		var total float64
		for _, m := range ms {
			total += float64(m.Weight)
		}
		s := make(map[string]float64, len(ms))
		for _, m := range ms {
			s[m.Key] = float64(m.Weight) / total
		}
		return s
	}
	a, b := share(old), share(new)
	var d float64
	for k, x := range a {
		if x > b[k] {
			d += x - b[k]
		}
	}
	return d
}

// balance returns max and min over members with weight > 0 of slots per unit of weight, over
// the mean.
func balance(ms []Member, table []uint32) (hi, lo float64) {
	c := counts(ms, table)
	var total float64
	for _, m := range ms {
		total += float64(m.Weight)
	}
	lo = 1e9
	for i, m := range ms {
		if m.Weight == 0 {
			continue
		}
		r := float64(c[i]) / (float64(len(table)) * float64(m.Weight) / total)
		hi, lo = max(hi, r), min(lo, r)
	}
	return hi, lo
}

// threadCPU is the CPU time this OS thread has used: on a shared machine it measures the build
// and not the time it spent waiting for a core.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type cell struct {
	hi, lo       float64
	moved, ratio map[string]float64
	cpu          time.Duration
	allocs       float64
}

func measure(tb testing.TB, v variant, ms []Member, size uint32, mixed bool) cell {
	tb.Helper()
	run := func(ms []Member) []string {
		t, err := buildWith(v.fill, ms, size, false)
		if err != nil {
			tb.Fatalf("%s N=%d M=%d: %v", v.name, len(ms), size, err)
		}
		return keys(ms, t)
	}
	base, err := buildWith(v.fill, ms, size, false)
	if err != nil {
		tb.Fatal(err)
	}
	c := cell{moved: map[string]float64{}, ratio: map[string]float64{}}
	c.hi, c.lo = balance(ms, base)
	before := keys(ms, base)
	const places = 3
	for at := range places {
		for _, ch := range gridChanges(at) {
			next := ch.apply(ms, mixed)
			f := moved(before, run(next))
			c.moved[ch.name] += f / places
			c.ratio[ch.name] += f / minMoved(ms, next) / places
		}
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	reps := max(3, int(2_000_000/int(size)))
	if !*report {
		reps = 1
	}
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := threadCPU()
	for range reps {
		if _, err := buildWith(v.fill, ms, size, false); err != nil {
			tb.Fatal(err)
		}
	}
	c.cpu = (threadCPU() - start) / time.Duration(reps)
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	c.allocs = float64(ms1.Mallocs-ms0.Mallocs) / float64(reps)
	return c
}

var gridChangeNames = []string{"remove 1", "remove 1%", "add 1", "weight ×2"}

func writeGrid(tb testing.TB, w io.Writer, variants []variant, sizes []uint32, ns []int) {
	fmt.Fprintf(w, "| M | N | weights | algorithm | max/mean | min/mean |")
	for _, ch := range gridChangeNames {
		fmt.Fprintf(w, " %s: moved (×min) |", ch)
	}
	fmt.Fprintf(w, " build CPU | allocs |\n|---|---|---|---|---|---|")
	for range gridChangeNames {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintf(w, "---|---|\n")
	for _, size := range sizes {
		for _, n := range ns {
			for _, mixed := range []bool{false, true} {
				ms := gridMembers(n, mixed)
				wname := "equal"
				if mixed {
					wname = "1..10"
				}
				nname := fmt.Sprint(n)
				if uint64(size) <= MinSlotsPerMember*uint64(n) {
					nname += "*"
				}
				for _, v := range variants {
					c := measure(tb, v, ms, size, mixed)
					fmt.Fprintf(w, "| %d | %s | %s | %s | %.4f | %.4f |", size, nname, wname, v.name, c.hi, c.lo)
					for _, ch := range gridChangeNames {
						fmt.Fprintf(w, " %.3f%% (%.2f) |", 100*c.moved[ch], c.ratio[ch])
					}
					fmt.Fprintf(w, " %.2f ms | %.0f |\n", float64(c.cpu.Microseconds())/1000, c.allocs)
				}
			}
		}
	}
}

// TestReport prints the grid: canonical Maglev beside Rendezvous and RendezvousSlack, then the
// trade-off curve of the slack. N marked * is below Build's size rule (size > 100 × N): Build refuses it,
// it is shown to see how the algorithms degrade.
func TestReport(t *testing.T) {
	if !*report {
		t.Skip("pass -report to print the quality grid")
	}
	var b strings.Builder
	sizes := []uint32{DefaultSize, 655373}
	ns := []int{10, 100, 1000, 5000}
	writeGrid(t, &b, []variant{maglevVariant, rendezvousVariant, slackVariant}, sizes, ns)
	fmt.Fprintf(&b, "\nTrade-off: how far above its share a member may go (slack) against flows moved\n\n")
	curve := []variant{rendezvousWithSlack(0), rendezvousWithSlack(1), rendezvousWithSlack(2), rendezvousWithSlack(5), rendezvousWithSlack(10)}
	writeGrid(t, &b, curve, sizes, []int{100, 1000})
	os.Stdout.WriteString(b.String())
}
