package consistenthash

import (
	"math"
	"math/bits"
	"slices"
)

// fillRendezvous is rendezvous hashing with bounded loads over the Maglev permutations
// (Rendezvous with slackPercent 0, RendezvousSlack with RendezvousSlackPercent).
//
// Each member walks its permutation as in Maglev, but a step looks at one slot only: the member
// claims it if it is free and otherwise moves on. Member m takes its j-th step at time
// −log2(1 − (j+½)/size)/w_m (clock.go), a pace that depends on its own weight alone; steps at
// the same time go heavier member first, then in canonical order. So a slot goes to the member
// whose walk reaches it first — weighted rendezvous hashing with "when m's walk reaches s" as
// the score — and nobody steals the slot that another member would have reached next, which is
// what makes canonical Maglev move extra slots when the set changes. A member stops at its cap,
// max(quota, ⌊(1+slack/100)·size·w/Σw⌋), which bounds the load; the walks go on until every
// slot is claimed (the caps add up to at least size, so they end).
func (r *ring) fillRendezvous(slackPercent uint64) {
	size := r.size
	sc := getScratch()
	defer scratchPool.Put(sc)

	// One stepper per member, grouped by weight, heaviest first, canonical order within.
	n := len(r.quota)
	var total uint64
	for _, w := range r.weight {
		total += uint64(w)
	}
	byWeight := grow(&sc.order, n)
	for i := range byWeight {
		byWeight[i] = uint32(i)
	}
	slices.SortStableFunc(byWeight, func(a, b uint32) int {
		return -cmpUint32(r.weight[a], r.weight[b])
	})
	walk := grow(&sc.steppers, n)
	caps := grow(&sc.start, n)
	for k, i := range byWeight {
		pos, skip := permutation(r.hashes[i], size)
		hi, lo := bits.Mul64(uint64(size)*(100+slackPercent), uint64(r.weight[i]))
		c, _ := bits.Div64(hi, lo, total)
		caps[i] = max(r.quota[i], uint32(c/100))
		walk[k] = stepper{pos: pos, skip: skip, left: caps[i], owner: r.orig[i], member: i}
	}
	classes := sc.classes[:0]
	for i := 0; i < n; {
		j := i + 1
		for j < n && r.weight[byWeight[j]] == r.weight[byWeight[i]] {
			j++
		}
		classes = append(classes, pace{weight: uint64(r.weight[byWeight[i]]), members: walk[i:j]})
		i = j
	}
	sc.classes = classes

	taken := grow(&sc.taken, int(size+63)/64)
	clear(taken)
	free := size
	active := uint64(n)
	claims := grow(&sc.claims, int(size)+1)
	// flush writes the claims logged by stepClass into the table.
	flush := func() {
		for _, c := range claims[:size-free] {
			r.table[c>>32] = uint32(c)
		}
	}

	// step lets every member of class c take one step, in canonical order, and drops those
	// that reach their cap. It reports whether the table is full.
	step := func(c *pace) bool {
		var full bool
		var dropped uint32
		free, dropped, full = stepClass(c, claims, taken, free, size)
		active -= uint64(dropped)
		if full {
			flush()
		}
		return full
	}

	// Late in the fill most steps land on taken slots. Once (active + free) × free is below
	// size, it is cheaper to compute where each walk meets the next free slot (O(active + free)
	// per claim) than to walk there (O(size) steps per claim in all).
	tailFrom := uint64(size)
	if r.noTail {
		tailFrom = 0
	}
	// Members still walking at the end may have claimed nothing.
	starved := func(ms []stepper) {
		for _, w := range ms {
			if w.left == caps[w.member] {
				r.feedStarved(w.member)
			}
		}
	}
	if len(classes) == 1 {
		for !step(&classes[0]) {
			if (active+uint64(free))*uint64(free) <= tailFrom {
				flush()
				starved(r.rendezvousTail(sc, classes, taken, free))
				return
			}
		}
		starved(classes[0].members)
		return
	}
	// A binary min-heap of the classes' next steps, by time.
	clk := newClock(uint64(size))
	if len(classes) <= maxScan {
		// Few classes: a scan for the earliest beats a heap, whose comparisons are coin
		// tosses for the branch predictor.
		next := grow(&sc.heap, len(classes))
		keys := grow(&sc.keys, len(classes)) // the keys' bits: positive floats order as integers
		for i := range classes {
			next[i] = nextStep{class: uint32(i)}
			next[i].set(clk, &classes[i])
			keys[i] = math.Float64bits(next[i].key)
		}
		for {
			i := earliest(next, keys)
			c := &classes[i]
			var dropped uint32
			var full bool
			if free, dropped, full = stepClass(c, claims, taken, free, size); full {
				flush()
				for _, c := range classes {
					starved(c.members)
				}
				return
			}
			active -= uint64(dropped)
			if len(c.members) == c.dead {
				keys[i] = math.MaxUint64
			} else {
				next[i].set(clk, c)
				keys[i] = math.Float64bits(next[i].key)
			}
			if (active+uint64(free))*uint64(free) <= tailFrom {
				flush()
				starved(r.rendezvousTail(sc, classes, taken, free))
				return
			}
		}
	}
	h := stepHeap(grow(&sc.heap, len(classes)))
	for i := range classes {
		h[i] = nextStep{class: uint32(i)}
		h[i].set(clk, &classes[i])
	}
	h.init()
	for {
		c := &classes[h[0].class]
		var dropped uint32
		var full bool
		if free, dropped, full = stepClass(c, claims, taken, free, size); full {
			flush()
			for _, c := range classes {
				starved(c.members)
			}
			return
		}
		active -= uint64(dropped)
		if len(c.members) == c.dead {
			h.pop()
		} else {
			h[0].set(clk, c)
			h.down(0)
		}
		if (active+uint64(free))*uint64(free) <= tailFrom {
			flush()
			starved(r.rendezvousTail(sc, classes, taken, free))
			return
		}
	}
}

// feedStarved keeps the promise that a member with a positive weight gets a slot. With very
// unequal weights a light member's walk can find every slot claimed; member i (canonical
// index) then takes the first slot on its walk whose owner has more than one.
func (r *ring) feedStarved(i uint32) {
	count := make([]int, slices.Max(r.orig)+1)
	for _, m := range r.table {
		count[m]++
	}
	p, skip := permutation(r.hashes[i], r.size)
	for count[r.table[p]] <= 1 {
		p = addMod(p, skip, r.size)
	}
	r.table[p] = r.orig[i]
}

// stepClass is one step of every member of class c (see fillRendezvous), claims logged in
// claims[size-free] onwards as slot<<32 | owner. It returns the
// number of free slots left, how many members reached their cap, and whether the table is full.
//
// Members at their cap stay in c.members, stepping without claiming, until they are an eighth
// of it: removing them at once costs a copy of the class each time one reaches its cap.
func stepClass(c *pace, claims []uint64, taken []uint64, free, size uint32) (uint32, uint32, bool) {
	ms := c.members
	var dropped uint32
	for i := range ms {
		w := &ms[i]
		p := w.pos
		w.pos = addMod(p, w.skip, size)
		// Whether the slot is free is a coin toss for most of the fill: no branch on it.
		alive := (w.left | -w.left) >> 31
		word := &taken[p>>6]
		got := (uint32(*word>>(p&63)&1) ^ 1) & alive
		*word |= uint64(got) << (p & 63)
		// Log the claim at the next free place of the claims log; a non-claim is overwritten.
		// Sequential writes here, random ones into the table later: ~20% faster than a
		// conditional write into the table on every step.
		claims[size-free] = uint64(p)<<32 | uint64(w.owner)
		w.left -= got
		if free -= got; free == 0 {
			return 0, 0, true
		}
		dropped += alive &^ ((w.left | -w.left) >> 31)
	}
	c.step++
	c.dead += int(dropped)
	if c.dead > len(ms)/8 {
		c.members = slices.DeleteFunc(ms, func(w stepper) bool { return w.left == 0 })
		c.dead = 0
	}
	return free, dropped, false
}

// stepper is one member's walk in fillRendezvous: the slot it looks at next, its stride, how
// many more slots it may claim, its index in the caller's slice and in canonical order.
type stepper struct {
	pos, skip, left uint32
	owner, member   uint32
}

// rendezvousTail finishes fillRendezvous event by event, with the same result as walking on.
// For each active member it keeps the free slot its walk reaches first and when; the earliest
// such meeting (time, then heavier, then canonical order) is the next claim.
//
// It returns the members still walking at the end.
func (r *ring) rendezvousTail(sc *scratch, classes []pace, taken []uint64, free uint32) []stepper {
	size := uint64(r.size)
	bar := newBarrett(size)
	clk := newClock(size)
	slots := freeSlots(sc, taken, size)
	ms := sc.tail[:0]
	for _, c := range classes {
		for _, w := range c.members {
			if w.left == 0 {
				continue
			}
			ms = append(ms, meet{stepper: w, weight: c.weight, step: c.step,
				inv: uint32(bar.inverse(uint64(w.skip)))})
		}
	}
	sc.tail = ms
	// nearest sets t.dist and t.slot to the first free slot on t's walk.
	nearest := func(t *meet) {
		best, at := size, 0
		for i, x := range slots {
			gap := uint64(x) + size - uint64(t.pos)
			if gap >= size {
				gap -= size
			}
			if d := bar.mulMod(gap, uint64(t.inv)); d < best {
				best, at = d, i
			}
		}
		t.dist, t.slot = best, slots[at]
		t.tau = clk.at(t.step + t.dist)
		t.key = stepKey(t.tau, t.weight)
	}
	for i := range ms {
		nearest(&ms[i])
	}
	for {
		first := 0
		for i := 1; i < len(ms); i++ {
			if ms[i].before(&ms[first]) {
				first = i
			}
		}
		t := &ms[first]
		x := t.slot
		r.table[x] = t.owner
		t.left--
		if len(slots) == 1 {
			out := grow(&sc.steppers, len(ms))
			for i := range ms {
				out[i] = ms[i].stepper
			}
			return out
		}
		i := slices.Index(slots, x)
		slots[i] = slots[len(slots)-1]
		slots = slots[:len(slots)-1]
		t.step += t.dist + 1
		t.pos = uint32((uint64(x) + uint64(t.skip)) % size)
		if t.left == 0 {
			ms[first] = ms[len(ms)-1]
			ms = ms[:len(ms)-1]
		} else {
			nearest(t)
		}
		for i := range ms {
			if ms[i].slot == x {
				nearest(&ms[i])
			}
		}
	}
}

// meet is an active member in rendezvousTail: its walk is at pos at its step-th step, and
// reaches slot, the first free one, dist steps later, at time tau/weight. inv is the inverse of
// its stride.
type meet struct {
	stepper
	slot       uint32
	inv        uint32
	weight     uint64
	step, dist uint64
	tau        uint64
	key        float64
}

// before orders meetings as fillRendezvous orders steps: by time, then heavier first, then
// canonical order.
func (a *meet) before(b *meet) bool {
	if c := timeCmp(a.key, b.key, a.tau, a.weight, b.tau, b.weight); c != 0 {
		return c < 0
	}
	if a.weight != b.weight {
		return a.weight > b.weight
	}
	return a.member < b.member
}

// inverse returns x⁻¹ mod m for prime m (Fermat: x^(m-2)).
func (b barrett) inverse(x uint64) uint64 {
	r, e := uint64(1), b.m-2
	for e > 0 {
		if e&1 == 1 {
			r = b.mulMod(r, x)
		}
		x = b.mulMod(x, x)
		e >>= 1
	}
	return r
}

// barrett computes x·y mod m for x, y < m < 2^32 without a division instruction.
type barrett struct{ m, mu uint64 }

func newBarrett(m uint64) barrett { return barrett{m: m, mu: ^uint64(0) / m} }

func (b barrett) mulMod(x, y uint64) uint64 {
	p := x * y
	q, _ := bits.Mul64(p, b.mu) // q ≤ p/m, and p/m - q < 2
	r := p - q*b.m
	if r >= b.m {
		r -= b.m
	}
	if r >= b.m {
		r -= b.m
	}
	return r
}

// pace is a class of members of one weight, which take their steps together.
type pace struct {
	weight  uint64
	step    uint64 // the next step is the step-th, from 0
	members []stepper
	dead    int // members at their cap still in members
}

// nextStep is a class's next step in the heap (no pointers: the heap moves them a lot).
type nextStep struct {
	key         float64
	tau, weight uint64 // time of the step × weight
	class       uint32
}

func (n *nextStep) set(clk clock, c *pace) {
	n.tau = clk.at(c.step)
	n.weight = c.weight
	n.key = stepKey(n.tau, n.weight)
}

// before reports whether a comes before b: earlier time, then heavier.
func (a *nextStep) before(b *nextStep) bool {
	if c := timeCmp(a.key, b.key, a.tau, a.weight, b.tau, b.weight); c != 0 {
		return c < 0
	}
	return a.weight > b.weight
}

// maxScan is the most weight classes fillRendezvous scans rather than keeping in a heap (a
// variable for the test that checks both ways agree).
var maxScan = 16

// earliest returns the index of the next step: the least key (keys[i] holds next[i].key's
// bits; a class that is done has math.MaxUint64), equal keys decided exactly.
func earliest(next []nextStep, keys []uint64) int {
	best, bestKey := 0, keys[0]
	for i := 1; i < len(keys); i++ {
		if k := keys[i]; k < bestKey {
			best, bestKey = i, k
		}
	}
	for i := best + 1; i < len(keys); i++ {
		if keys[i] == bestKey && next[i].before(&next[best]) {
			best = i
		}
	}
	return best
}

type stepHeap []nextStep

func (h stepHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h stepHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].before(&h[l]) {
			m = r
		}
		if !h[m].before(&h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func (h *stepHeap) pop() {
	old := *h
	last := len(old) - 1
	old[0] = old[last]
	*h = old[:last]
	h.down(0)
}

func cmpUint32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
