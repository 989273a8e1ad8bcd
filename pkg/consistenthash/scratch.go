package consistenthash

import "sync"

// scratch holds the working buffers of one build. They are pooled: a 65537-slot build needs
// about 300 KiB of them, and allocating that afresh on each build costs as much as the build.
type scratch struct {
	order []uint32
	start []uint32
	taken []uint64
	walk  []walker

	steppers []stepper
	claims   []uint64

	classes []pace
	heap    []nextStep
	keys    []uint64
	free    []uint32
	tail    []meet
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

// grow returns (*buf)[:n], reallocating when the capacity is short. The contents are not
// cleared.
func grow[T any](buf *[]T, n int) []T {
	if cap(*buf) < n {
		*buf = make([]T, n)
	}
	*buf = (*buf)[:n]
	return *buf
}
