package consistenthash

// Sizes are the ring sizes a VIP that names none chooses from, smallest first: primes, each
// about twice the one before, the last the largest ring the data path indexes (MAX_RING_SIZE
// in bpf/lb_consts.h). 65537 is DefaultSize. A fixed list rather than "the next prime above
// 100 × backends": a ring only changes size when the backends cross a step, so adding one
// backend to a VIP does not resize (and rehash) its whole ring.
var sizes = [...]uint32{DefaultSize, 131071, 262147, 524287, 655373, 1048573}

// Sizes returns the ring sizes SizeFor picks from, smallest first.
func Sizes() []uint32 { s := sizes; return s[:] }

// SizeFor is the smallest of Sizes that keeps the balance promise for active members (those
// with weight > 0): more than MinSlotsPerMember slots each on average, so that one slot more
// or less is at most 1% of a member's share. ok is false when even the largest is too small
// (more than 10485 active members).
func SizeFor(active int) (size uint32, ok bool) {
	for _, s := range sizes {
		if uint64(s) > uint64(MinSlotsPerMember)*uint64(max(active, 0)) {
			return s, true
		}
	}
	return 0, false
}
