package consistenthash

import "math/bits"

// The pace of Rendezvous' walks. Member m takes its j-th step (j from 0) at time
// τ(j)/w_m with τ(j) = −log2(1 − (j+½)/size): for any slot, the time m's walk reaches it is
// then (close to) an exponential variable of rate w_m, and the first of several such variables
// belongs to m with probability w_m/Σw — the weighted rendezvous hashing trick, which keeps
// every member near its share before any cap binds. Time is fixed point with 32 fractional bits
// and computed with integers only, so that every machine orders the steps the same way.

// log2Table[i] is log2(1 + i/1024) × 2^32, i in [0, 1024].
var log2Table = func() (t [1025]uint64) {
	for i := range 1024 {
		t[i] = log2Fraction(1024+uint64(i), 1024)
	}
	t[1024] = 1 << 32
	return t
}()

// log2Fraction returns log2(num/den) × 2^32 for 1 ≤ num/den < 2, by repeated squaring.
func log2Fraction(num, den uint64) uint64 {
	const one = uint64(1) << 62 // x is kept as a fixed-point number with 62 fractional bits
	x, _ := bits.Div64(num>>2, num<<62, den)
	var r uint64
	for bit := uint64(1) << 31; bit != 0; bit >>= 1 {
		hi, lo := bits.Mul64(x, x)
		x = hi<<2 | lo>>62
		if x >= 2*one {
			x >>= 1
			r |= bit
		}
	}
	return r
}

// log2Fixed returns log2(k) × 2^32 for k ≥ 1: exact exponent, mantissa from log2Table with
// linear interpolation (non-decreasing in k).
func log2Fixed(k uint64) uint64 {
	e := 63 - bits.LeadingZeros64(k)
	m := k << (63 - e)
	i := (m >> 53) & 1023
	frac := (m >> 21) & (1<<32 - 1)
	lo, hi := log2Table[i], log2Table[i+1]
	return uint64(e)<<32 + lo + (hi-lo)*frac>>32
}

// clock computes step times for a ring of size slots.
type clock struct{ size, log2Size2 uint64 }

func newClock(size uint64) clock { return clock{size, log2Fixed(2 * size)} }

// at is τ(j) × 2^32 (see above).
func (c clock) at(j uint64) uint64 {
	if 2*j+1 >= 2*c.size {
		// A walk never needs more than size steps; keep τ increasing regardless.
		return 2*c.log2Size2 + j
	}
	return c.log2Size2 - log2Fixed(2*c.size-2*j-1)
}

// stepKey is a step's time τ/w for the heap: the float (one correctly rounded division, the
// same on every IEEE machine) orders most pairs, and earlier returns whether time a/wa comes
// before b/wb exactly, for the pairs whose floats are equal.
func stepKey(tau, w uint64) float64 { return float64(tau) / float64(w) }

// timeCmp compares ta/wa with tb/wb: -1, 0 or +1. Strict order of the float keys implies the
// same strict order of the exact values (rounding is monotone), so this is only needed on a tie.
func timeCmp(ka, kb float64, ta, wa, tb, wb uint64) int {
	if ka != kb {
		if ka < kb {
			return -1
		}
		return 1
	}
	xh, xl := bits.Mul64(ta, wb)
	yh, yl := bits.Mul64(tb, wa)
	switch {
	case xh != yh:
		if xh < yh {
			return -1
		}
		return 1
	case xl != yl:
		if xl < yl {
			return -1
		}
		return 1
	}
	return 0
}
