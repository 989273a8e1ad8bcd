package dataplane

import (
	"time"

	"github.com/cilium/ebpf"
)

// LoadDetached loads xdp_lb with private maps and attaches it nowhere: for benchmarks and
// tools that feed it packets.
func LoadDetached(cfg Config) (*LB, error) {
	cfg.PinDir = ""
	return loadLB(cfg)
}

// TestRun passes one frame through xdp_lb (BPF_PROG_TEST_RUN with one packet per call, so
// the program never sees its own output) and returns the XDP action and the frame after it.
func (lb *LB) TestRun(frame []byte) (action uint32, out []byte, err error) {
	opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+64)}
	action, err = lb.objs.XdpLb.Run(opts)
	return action, opts.DataOut, err
}

// Measure runs one frame once and returns the action and the time the kernel measured for
// that single run.
func (lb *LB) Measure(frame []byte) (action uint32, took time.Duration, err error) {
	return lb.objs.XdpLb.Benchmark(frame, 1, nil)
}
