package consistenthash

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
	for _, m := range order {
		w := &walk[m]
		p := w.pos
		for taken[p>>6]&(1<<(p&63)) != 0 {
			p = addMod(p, w.skip, size)
		}
		taken[p>>6] |= 1 << (p & 63)
		r.table[p] = r.orig[m]
		w.pos = addMod(p, w.skip, size)
	}
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
