package dataplane

import "github.com/cilium/ebpf"

// XDPProgram is the loaded xdp_lb program, for benchmarks that run it from a wrapper of
// their own (a tail call through a program array, bench/datapath). The LB owns it: the
// caller must not close it, nor use it after lb.Close.
func (lb *LB) XDPProgram() *ebpf.Program { return lb.objs.XdpLb }
