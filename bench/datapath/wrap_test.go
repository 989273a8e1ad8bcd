package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// TestWrapper checks what the wrap method rests on: run through the wrapper with Repeat, xdp_lb
// sees the same frame every run (its last output equals one run's output, and every run was
// a flow-table hit), and the varying wrapper gives it a new flow every run (every run a miss).
func TestWrapper(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	b, err := newBench()
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	get := func(key string) scenario {
		for _, s := range b.scenarios {
			if s.key == key {
				return s
			}
		}
		t.Fatalf("no scenario %s", key)
		return scenario{}
	}
	const runs = 1000

	hit := get("hit")
	_, want, err := b.lb.TestRun(hit.frame) // records the flow; the output of one run
	if err != nil {
		t.Fatal(err)
	}
	if err := b.setWrap(hit); err != nil {
		t.Fatal(err)
	}
	before, err := b.lb.Stats()
	if err != nil {
		t.Fatal(err)
	}
	opts := &ebpf.RunOptions{Data: hit.frame, DataOut: make([]byte, len(hit.frame)+64), Repeat: runs}
	ret, err := b.wrap.XdpWrap.Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	if ret != hit.want {
		t.Fatalf("action %d, want %d", ret, hit.want)
	}
	if !bytes.Equal(opts.DataOut, want) {
		t.Fatalf("after %d wrapped runs the frame is\n%x\nwant (one run's output)\n%x", runs, opts.DataOut, want)
	}
	after, err := b.lb.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Events["lru_hit"] - before.Events["lru_hit"]; d != runs {
		t.Fatalf("%d flow-table hits in %d runs", d, runs)
	}

	miss := get("miss")
	if err := b.setWrap(miss); err != nil {
		t.Fatal(err)
	}
	before = after
	ret, _, err = b.wrap.XdpWrapVary.Benchmark(miss.frame, runs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ret != miss.want {
		t.Fatalf("miss: action %d, want %d", ret, miss.want)
	}
	after, err = b.lb.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Events["lru_miss"] - before.Events["lru_miss"]; d != runs {
		t.Fatalf("%d flow-table misses in %d runs with a new flow each", d, runs)
	}
	if d := after.Verdicts["tx"].Packets - before.Verdicts["tx"].Packets; d != runs {
		t.Fatalf("%d sent in %d runs", d, runs)
	}
}
