package consistenthash

import "math/bits"

// fillMaglev is canonical Maglev with exact weighted quotas.
//
// Each active member i walks its permutation offset_i, offset_i+skip_i, … (mod size) and, on
// each of its turns, takes the first free slot on that walk. Turns come in R = max quota_i
// rounds; member i has quota_i turns spread evenly over them, its j-th in round
// ⌊(2j+1)·R / (2·quota_i)⌋, and within a round members go in canonical order. With equal
// weights this is the paper's round robin; with unequal weights a heavy member does not grab a
// long run of slots at once.
func (r *ring) fillMaglev() {
	size := r.size
	sc := getScratch()
	defer scratchPool.Put(sc)
	order := r.turnOrder(sc)

	walk := grow(&sc.walk, len(r.quota))
	for i := range walk {
		w := &walk[i]
		w.pos, w.skip = permutation(r.hashes[i], size)
	}
	taken := grow(&sc.taken, int(size+63)/64)
	clear(taken)
	// The last turns walk far over taken slots; once free² ≤ size, compute each member's next
	// free slot from the list of free ones instead (same result, see maglevTail).
	tail := len(order)
	if !r.noTail {
		for tail > 0 && uint64(len(order)-tail+1)*uint64(len(order)-tail+1) <= uint64(size) {
			tail--
		}
	}
	for _, m := range order[:tail] {
		w := &walk[m]
		p := w.pos
		for taken[p>>6]&(1<<(p&63)) != 0 {
			p = addMod(p, w.skip, size)
		}
		taken[p>>6] |= 1 << (p & 63)
		r.table[p] = r.orig[m]
		w.pos = addMod(p, w.skip, size)
	}
	if tail < len(order) {
		r.maglevTail(sc, order[tail:], walk, taken)
	}
}

// maglevTail plays the last turns of fillMaglev: on its turn a member takes the free slot its
// walk reaches first, found as the free slot x with the least (x - pos)·skip⁻¹ mod size.
func (r *ring) maglevTail(sc *scratch, order []uint32, walk []walker, taken []uint64) {
	size := uint64(r.size)
	bar := newBarrett(size)
	slots := freeSlots(sc, taken, size)
	for _, m := range order {
		w := &walk[m]
		inv := bar.inverse(uint64(w.skip))
		best, at := size, 0
		for i, x := range slots {
			gap := uint64(x) + size - uint64(w.pos)
			if gap >= size {
				gap -= size
			}
			if d := bar.mulMod(gap, inv); d < best {
				best, at = d, i
			}
		}
		x := slots[at]
		r.table[x] = r.orig[m]
		w.pos = uint32((uint64(x) + uint64(w.skip)) % size)
		slots[at] = slots[len(slots)-1]
		slots = slots[:len(slots)-1]
	}
}

// freeSlots lists the slots not set in taken.
func freeSlots(sc *scratch, taken []uint64, size uint64) []uint32 {
	slots := sc.free[:0]
	for i, word := range taken {
		for x := ^word; x != 0; x &= x - 1 {
			if s := uint64(i)*64 + uint64(bits.TrailingZeros64(x)); s < size {
				slots = append(slots, uint32(s))
			}
		}
	}
	sc.free = slots
	return slots
}

// walker is one member's position on its permutation and its stride.
type walker struct{ pos, skip uint32 }

// addMod returns (p + s) mod size for p, s < size, without a branch: the wrap-around is taken
// at random, so a branch would be mispredicted often on the hot path (this compiles to CMOV).
func addMod(p, s, size uint32) uint32 {
	q := uint64(p) + uint64(s)
	w := q - uint64(size)
	if q >= uint64(size) {
		q = w
	}
	return uint32(q)
}

// turnOrder lists active member indices in turn order (see fillMaglev), size entries in all:
// a counting sort by round, rounds in [0, max quota). Round numbers are stepped, not divided.
func (r *ring) turnOrder(sc *scratch) []uint32 {
	var rounds uint64
	for _, q := range r.quota {
		rounds = max(rounds, uint64(q))
	}
	start := grow(&sc.start, int(rounds+1))
	clear(start)
	for _, q := range r.quota {
		den := 2 * uint64(q)
		k, rem := rounds/den, rounds%den
		step, stepRem := rounds/uint64(q), (2*rounds)%den
		for range q {
			start[k+1]++
			k += step
			if rem += stepRem; rem >= den {
				k++
				rem -= den
			}
		}
	}
	for k := uint64(1); k <= rounds; k++ {
		start[k] += start[k-1]
	}
	order := grow(&sc.order, int(r.size))
	for i, q := range r.quota {
		den := 2 * uint64(q)
		k, rem := rounds/den, rounds%den
		step, stepRem := rounds/uint64(q), (2*rounds)%den
		for range q {
			order[start[k]] = uint32(i)
			start[k]++
			k += step
			if rem += stepRem; rem >= den {
				k++
				rem -= den
			}
		}
	}
	return order
}
