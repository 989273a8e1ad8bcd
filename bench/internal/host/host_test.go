package host

import "testing"

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		v    []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := Median(c.v); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestKernelAndCPUModel(t *testing.T) {
	// this runs on Linux, where both files exist and name something
	if k := Kernel(); k == "?" || k == "" {
		t.Errorf("Kernel() = %q", k)
	}
	if m := CPUModel(); m == "" {
		t.Errorf("CPUModel() is empty; want a name or ?")
	}
}
