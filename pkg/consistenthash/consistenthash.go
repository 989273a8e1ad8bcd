// Package consistenthash builds the lookup tables ("rings") that map a flow hash to a backend.
//
// A table has a prime number of slots; the data path indexes it with flow_hash % size. Build is a
// pure function of the member set and weights: every LB node computes the same slot→Key mapping
// whatever order the members are listed in, so no shared state or history is needed.
package consistenthash

import (
	"errors"
	"fmt"
	"math/bits"
	"sort"
)

// Member is one backend as the ring sees it. Key is stable identity (e.g. the backend's address
// string). Weight is any non-negative integer; 0 means drained (no slots, no new flows).
type Member struct {
	Key    string
	Weight uint32
}

// Algorithm names a table-building algorithm; it is carried per VIP in the configuration.
type Algorithm string

const (
	// Maglev is canonical weighted Maglev (Eisenbud et al., NSDI 2016): every member walks its
	// own permutation of the slots and takes the first free one when its turn comes; turns are
	// interleaved in proportion to weight.
	Maglev Algorithm = "maglev"

	// Rendezvous is weighted rendezvous hashing over the same walks, with exact shares: a slot
	// goes to the member whose walk reaches it first (a member steps at a pace set by its
	// weight), among those still short of their share. Its balance is Maglev's (every member
	// gets its share rounded), and when members leave, join or change weight it moves fewer
	// flows than Maglev in every cell of the quality grid (README.md).
	Rendezvous Algorithm = "rendezvous"

	// RendezvousSlack is Rendezvous where a member may take up to 1% more than its share
	// (RendezvousSlackPercent). It moves fewer flows still, but members whose walks were unlucky
	// end below their share (0.84–0.90 of it for the lightest members of mixed sets of 100 to
	// 1000 members; README.md).
	RendezvousSlack Algorithm = "rendezvous-slack"
)

// DefaultAlgorithm is used for a VIP that names none: Rendezvous, which is exactly as balanced
// as canonical Maglev and moves fewer flows than it across the whole quality grid (README.md).
// Maglev stays selectable per VIP.
const DefaultAlgorithm = Rendezvous

// Algorithms lists the algorithms Build knows, DefaultAlgorithm first.
func Algorithms() []Algorithm { return []Algorithm{Rendezvous, Maglev, RendezvousSlack} }

// OrDefault is the algorithm a VIP's ring is built with: a, or DefaultAlgorithm when a is
// empty (the VIP names none). The daemon and lbd plan both choose with it, so a plan
// describes the rings the daemon builds.
func (a Algorithm) OrDefault() Algorithm {
	if a == "" {
		return DefaultAlgorithm
	}
	return a
}

// RendezvousSlackPercent is how far above its share a member may go with RendezvousSlack: the
// cap that keeps max/mean slots per unit of weight within 1%.
const RendezvousSlackPercent = 1

// DefaultSize is the ring size the data path is compiled with (a prime).
const DefaultSize uint32 = 65537

// MinSlotsPerMember is how many slots each member with a positive weight must have on average:
// Build refuses size <= MinSlotsPerMember × active members, because below that the balance
// promise (max/mean slots within 1%) cannot be kept.
const MinSlotsPerMember = 100

// Errors returned by Build; check with errors.Is.
var (
	ErrNoMembers        = errors.New("no members")
	ErrAllWeightsZero   = errors.New("all members have weight 0")
	ErrDuplicateKey     = errors.New("duplicate member key")
	ErrSizeNotPrime     = errors.New("ring size is not prime")
	ErrSizeTooSmall     = errors.New("ring size too small for the number of members")
	ErrUnknownAlgorithm = errors.New("unknown consistent hashing algorithm")
)

// Build returns a table of size slots; table[i] is an index into members (the caller's slice).
// Each member with weight w gets round(size × w / Σw) slots (largest remainder; a member with a
// positive weight gets at least one slot), members with weight 0 get none.
func Build(alg Algorithm, members []Member, size uint32) ([]uint32, error) {
	return build(alg, members, size, true)
}

// build is Build; checkSize false skips the size-too-small check so that the quality report can
// show what happens below the limit.
func build(alg Algorithm, members []Member, size uint32, checkSize bool) ([]uint32, error) {
	var fill func(*ring)
	switch alg {
	case Maglev:
		fill = (*ring).fillMaglev
	case Rendezvous:
		fill = func(r *ring) { r.fillRendezvous(0) }
	case RendezvousSlack:
		fill = func(r *ring) { r.fillRendezvous(RendezvousSlackPercent) }
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownAlgorithm, alg)
	}
	return buildWith(fill, members, size, checkSize)
}

func buildWith(fill func(*ring), members []Member, size uint32, checkSize bool) ([]uint32, error) {
	r, err := newRing(members, size, checkSize)
	if err != nil {
		return nil, err
	}
	fill(r)
	return r.table, nil
}

// ring is the working state shared by the algorithms. Active members (weight > 0) are kept in
// a canonical order (by key hash, then key) so the result does not depend on input order.
type ring struct {
	size   uint32
	hashes []uint64 // per active member, keyHash(Key)
	orig   []uint32 // per active member, its index in the caller's slice
	weight []uint32 // per active member
	quota  []uint32 // per active member, exact number of slots it must end up with
	table  []uint32 // the result, size slots

	noTail bool // tests: fillRendezvous walks to the end instead of computing the tail
}

func newRing(members []Member, size uint32, checkSize bool) (*ring, error) {
	if len(members) == 0 {
		return nil, ErrNoMembers
	}
	idx := make([]uint32, len(members))
	hs := make([]uint64, len(members))
	var active int
	for i := range members {
		idx[i] = uint32(i)
		hs[i] = keyHash(members[i].Key)
		if members[i].Weight > 0 {
			active++
		}
	}
	sort.Slice(idx, func(a, b int) bool {
		x, y := idx[a], idx[b]
		if hs[x] != hs[y] {
			return hs[x] < hs[y]
		}
		return members[x].Key < members[y].Key
	})
	for i := 1; i < len(idx); i++ {
		if members[idx[i]].Key == members[idx[i-1]].Key {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateKey, members[idx[i]].Key)
		}
	}
	if active == 0 {
		return nil, ErrAllWeightsZero
	}
	if !IsPrime(size) {
		return nil, fmt.Errorf("%w: %d", ErrSizeNotPrime, size)
	}
	if uint64(size) < uint64(active) || checkSize && uint64(size) <= MinSlotsPerMember*uint64(active) {
		return nil, fmt.Errorf("%w: %d slots for %d members with weight > 0; need more than %d (%d per member) to keep max/mean slots within 1%%",
			ErrSizeTooSmall, size, active, MinSlotsPerMember*uint64(active), MinSlotsPerMember)
	}
	r := &ring{
		size:   size,
		hashes: make([]uint64, 0, active),
		orig:   make([]uint32, 0, active),
		weight: make([]uint32, 0, active),
		quota:  make([]uint32, active),
		table:  make([]uint32, size),
	}
	for _, i := range idx {
		if members[i].Weight == 0 {
			continue
		}
		r.hashes = append(r.hashes, hs[i])
		r.orig = append(r.orig, i)
		r.weight = append(r.weight, members[i].Weight)
	}
	r.computeQuotas()
	return r, nil
}

// computeQuotas splits size slots among the active members in proportion to weight with the
// largest remainder method (ties go to the earlier member in canonical order), then gives any
// member whose share rounded to zero one slot, taken from the member with the largest quota.
func (r *ring) computeQuotas() {
	n := len(r.weight)
	var total uint64
	for _, w := range r.weight {
		total += uint64(w)
	}
	rem := make([]uint64, n)
	var given uint64
	for i, w := range r.weight {
		// size × w can exceed 64 bits only in theory (both < 2^32), but keep it exact.
		hi, lo := bits.Mul64(uint64(r.size), uint64(w))
		q, rm := bits.Div64(hi, lo, total)
		r.quota[i] = uint32(q)
		rem[i] = rm
		given += q
	}
	if left := uint64(r.size) - given; left > 0 {
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return rem[order[a]] > rem[order[b]] })
		for _, i := range order[:left] {
			r.quota[i]++
		}
	}
	for i := range r.quota {
		if r.quota[i] > 0 {
			continue
		}
		max := 0
		for j := range r.quota {
			if r.quota[j] > r.quota[max] {
				max = j
			}
		}
		r.quota[max]--
		r.quota[i] = 1
	}
}

// keyHash is the 64-bit FNV-1a hash of key. It is part of the on-the-wire contract between LB
// nodes (all must build the same table), so it must never change.
func keyHash(key string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime64
	}
	return h
}

// mix64 is the splitmix64 finaliser: it spreads the bits of a key hash so that derived values
// (offset, skip, per-slot scores) look independent of each other.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Seeds that make a member's offset and skip independent; fixed forever (see keyHash).
const (
	seedOffset = 0x9e3779b97f4a7c15
	seedSkip   = 0xc2b2ae3d27d4eb4f
)

// permutation returns where a member's walk over the slots starts and its stride. size is
// prime, so any stride in [1, size-1] visits every slot once.
func permutation(h uint64, size uint32) (offset, skip uint32) {
	offset = uint32(mix64(h^seedOffset) % uint64(size))
	skip = uint32(mix64(h^seedSkip)%uint64(size-1)) + 1
	return offset, skip
}
