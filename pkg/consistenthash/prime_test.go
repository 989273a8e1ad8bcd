package consistenthash

import "testing"

func TestIsPrime(t *testing.T) {
	sieve := make([]bool, 200000)
	for i := 2; i < len(sieve); i++ {
		sieve[i] = true
	}
	for i := 2; i*i < len(sieve); i++ {
		if sieve[i] {
			for j := i * i; j < len(sieve); j += i {
				sieve[j] = false
			}
		}
	}
	for n := range sieve {
		if IsPrime(uint32(n)) != sieve[n] {
			t.Fatalf("IsPrime(%d) = %v", n, !sieve[n])
		}
	}
	for _, tc := range []struct {
		n    uint32
		want bool
	}{
		{4294967291, true}, {4294967295, false}, {2147483647, true},
		{3215031751, false}, // strong pseudoprime to bases 2, 3, 5, 7
		{1000003, true}, {1000001, false},
	} {
		if IsPrime(tc.n) != tc.want {
			t.Errorf("IsPrime(%d) != %v", tc.n, tc.want)
		}
	}
}

// NextPrime and PrevPrime agree with a scan by IsPrime, which the sieve above checks, and
// stop at the ends of the 32-bit range.
func TestNextPrevPrime(t *testing.T) {
	for n := uint32(0); n < 5000; n++ {
		next := n + 1
		for !IsPrime(next) {
			next++
		}
		if got := NextPrime(n); got != next {
			t.Fatalf("NextPrime(%d) = %d, want %d", n, got, next)
		}
		prev := uint32(0)
		for m := n; m > 2; {
			m--
			if IsPrime(m) {
				prev = m
				break
			}
		}
		if got := PrevPrime(n); got != prev {
			t.Fatalf("PrevPrime(%d) = %d, want %d", n, got, prev)
		}
	}
	for _, tc := range []struct{ n, next, prev uint32 }{
		{65536, 65537, 65521},
		{65537, 65539, 65521},
		{1048573, 1048583, 1048571},
		{4294967290, 4294967291, 4294967279},
		{4294967291, 0, 4294967279},
		{4294967295, 0, 4294967291},
	} {
		if got := NextPrime(tc.n); got != tc.next {
			t.Errorf("NextPrime(%d) = %d, want %d", tc.n, got, tc.next)
		}
		if got := PrevPrime(tc.n); got != tc.prev {
			t.Errorf("PrevPrime(%d) = %d, want %d", tc.n, got, tc.prev)
		}
	}
}
