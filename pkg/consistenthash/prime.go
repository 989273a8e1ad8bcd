package consistenthash

// Ring sizes are prime (so that every stride of a permutation walk visits every slot): this
// file is the one place lbd does prime arithmetic; pkg/config uses it to check ring_size.

// IsPrime reports whether n is prime (deterministic Miller–Rabin: bases 2, 7 and 61 decide
// every n < 4,759,123,141).
func IsPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	for _, p := range []uint32{2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 61} {
		if n == p {
			return true
		}
		if n%p == 0 {
			return false
		}
	}
	m := uint64(n)
	d, s := m-1, 0
	for d%2 == 0 {
		d /= 2
		s++
	}
	for _, a := range []uint64{2, 7, 61} {
		x := powMod(a, d, m)
		if x == 1 || x == m-1 {
			continue
		}
		composite := true
		for i := 1; i < s; i++ {
			x = x * x % m
			if x == m-1 {
				composite = false
				break
			}
		}
		if composite {
			return false
		}
	}
	return true
}

func powMod(b, e, m uint64) uint64 {
	r := uint64(1)
	b %= m
	for e > 0 {
		if e&1 == 1 {
			r = r * b % m
		}
		b = b * b % m
		e >>= 1
	}
	return r
}

// NextPrime returns the smallest prime > n, or 0 when there is none below 2^32.
func NextPrime(n uint32) uint32 {
	for m := uint64(n) + 1; m <= 1<<32-1; m++ {
		if IsPrime(uint32(m)) {
			return uint32(m)
		}
	}
	return 0
}

// PrevPrime returns the largest prime < n, or 0 when there is none (n <= 2).
func PrevPrime(n uint32) uint32 {
	for m := n; m > 2; {
		m--
		if IsPrime(m) {
			return m
		}
	}
	return 0
}
