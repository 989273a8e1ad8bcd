// Package host describes the machine a benchmark ran on, for its report, and holds the
// little arithmetic the benchmark programs share.
package host

import (
	"os"
	"slices"
	"strings"
)

// Kernel is the running kernel's release, "?" when it cannot be read.
func Kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil || len(b) == 0 {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// CPUModel is the first CPU's model name from /proc/cpuinfo, "?" when there is none.
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// Median of v: the mean of the middle two for an even count, 0 for none.
func Median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
