package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegisterAllOrNone(t *testing.T) {
	r := prometheus.NewPedanticRegistry()
	a := prometheus.NewCounter(prometheus.CounterOpts{Name: "lbd_test_a_total", Help: "a"})
	b := prometheus.NewCounter(prometheus.CounterOpts{Name: "lbd_test_b_total", Help: "b"})
	taken := prometheus.NewCounter(prometheus.CounterOpts{Name: "lbd_test_c_total", Help: "c"})
	if err := r.Register(taken); err != nil {
		t.Fatal(err)
	}
	clash := prometheus.NewCounter(prometheus.CounterOpts{Name: "lbd_test_c_total", Help: "c"})
	if err := Register(r, a, b, clash); err == nil {
		t.Fatal("registered a collector whose name is taken")
	}
	if n, err := testutil.GatherAndCount(r); err != nil || n != 1 {
		t.Fatalf("after a failed Register: %d metrics (%v), want only the one registered before", n, err)
	}
	if err := Register(r, a, b); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(r); n != 3 {
		t.Fatalf("%d metrics, want 3", n)
	}
	Unregister(r, a, b)
	if n, _ := testutil.GatherAndCount(r); n != 1 {
		t.Fatalf("after Unregister: %d metrics, want 1", n)
	}
}
