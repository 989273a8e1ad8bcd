package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Path is what one scenario makes xdp_lb do, derived from the code (bpf/xdp_lb.c: xdp_lb,
// lb_ipv4, balance, send; the SYN flood guard off), with the part the counters can confirm
// checked before the measurement (checkPaths).
type Path struct {
	Key     string   `json:"key"`
	Lookups []string `json:"map_lookups"` // maps looked up, in order
	Updates []string `json:"map_updates"`
	Helpers []string `json:"helpers"`         // helper calls besides map lookups and updates
	Reason  string   `json:"reason"`          // the stats counter that moves
	Event   string   `json:"event,omitempty"` // the events that move, ", " between two
}

var paths = []Path{
	{Key: "hit", Lookups: []string{"vip_filter", "flows_v4", "backends", "events", "vip_stats", "backend_stats", "stats"},
		Helpers: []string{"xdp_adjust_head"}, Reason: "tx", Event: "lru_hit"},
	{Key: "miss", Lookups: []string{"vip_filter", "flows_v4", "vips", "events", "flowsync_ctl", "rings", "ring (inner)", "backends", "vip_stats", "backend_stats", "stats"},
		Updates: []string{"flows_v4"}, Helpers: []string{"xdp_adjust_head"}, Reason: "tx", Event: "lru_miss"},
	// an LB holding adopted flows (flow sync), none of them this one: the filter's bit is
	// clear (but for 1000 in 2^20 flows, whose lookup then misses adopted_v4)
	{Key: "adopted_miss", Lookups: []string{"vip_filter", "flows_v4", "vips", "events", "flowsync_ctl", "adopted_filter", "rings", "ring (inner)", "backends", "vip_stats", "backend_stats", "stats"},
		Updates: []string{"flows_v4"}, Helpers: []string{"xdp_adjust_head"}, Reason: "tx", Event: "lru_miss"},
	// the scenario's SYN repeats one tuple: after the first its entry is rewritten in place
	{Key: "syn", Lookups: []string{"vip_filter", "flows_v4", "vips", "events", "rings", "ring (inner)", "backends", "vip_stats", "backend_stats", "stats"},
		Helpers: []string{"xdp_adjust_head"}, Reason: "tx", Event: "syn"},
	{Key: "pass", Lookups: []string{"vip_filter", "stats"}, Reason: "pass"},
	{Key: "icmp", Lookups: []string{"vip_filter", "stats"}, Reason: "pass"},
}

func pathOf(key string) (Path, bool) {
	for _, p := range paths {
		if p.Key == key {
			return p, true
		}
	}
	return Path{}, false
}

// checkPaths runs each xdp_lb scenario's frame once and checks that the counters say the
// path the table above describes: exactly its reason and its event moved by one, and the
// VIP and backend counters moved on a transmit. It checks the counters' lookups, not the
// others (the address filter, VIP, flow, ring and backend lookups are inlined, with no
// counter of their own).
func (b *bench) checkPaths() error {
	for _, s := range b.scenarios {
		if !s.lb {
			continue
		}
		p, ok := pathOf(s.key)
		if !ok {
			return fmt.Errorf("%s: no path", s.name)
		}
		lb := b.lb
		if s.on != nil {
			lb = s.on
		}
		f := s.frame
		if s.vary {
			f = setFlow(f, missCall, 0xffffffff) // a flow neither method sends
		} else if _, _, err := lb.TestRun(f); err != nil { // the hit's flow recorded
			return err
		}
		before, err := lb.Stats()
		if err != nil {
			return err
		}
		if _, _, err := lb.TestRun(f); err != nil {
			return err
		}
		after, err := lb.Stats()
		if err != nil {
			return err
		}
		for name, c := range after.Verdicts {
			d, want := c.Packets-before.Verdicts[name].Packets, uint64(0)
			if name == p.Reason {
				want = 1
			}
			if d != want {
				return fmt.Errorf("%s: reason %s moved by %d, want %d", s.name, name, d, want)
			}
		}
		for name, n := range after.Events {
			d, want := n-before.Events[name], uint64(0)
			if slices.Contains(strings.Split(p.Event, ", "), name) {
				want = 1
			}
			if d != want {
				return fmt.Errorf("%s: event %s moved by %d, want %d", s.name, name, d, want)
			}
		}
		var vipMoved uint64
		for k, c := range after.VIPs {
			vipMoved += c.Packets - before.VIPs[k].Packets
		}
		if want := b2u(p.Reason == "tx"); vipMoved != want {
			return fmt.Errorf("%s: VIP counters moved by %d, want %d", s.name, vipMoved, want)
		}
	}
	return nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// ProgramInfo is a loaded program's size as the kernel reports it.
type ProgramInfo struct {
	Name     string `json:"name"`
	Xlated   int    `json:"xlated_insns"`   // after the verifier's rewrites
	Verified uint32 `json:"verified_insns"` // instructions the verifier processed over all paths
	Jited    uint32 `json:"jited_bytes"`
	Calls    int    `json:"helper_calls"` // call instructions in the xlated code (helpers, inlined lookups' slow paths, subprograms)
}

func (b *bench) programs() []ProgramInfo {
	var out []ProgramInfo
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"xdp_lb", b.lb.XDPProgram()},
		{"floor: XDP_PASS", b.floors.XdpPassFloor},
		{"floor: IPIP push + XDP_TX", b.floors.XdpIpipFloor},
		{"floor: flow insert + IPIP push + XDP_TX", b.floors.XdpInsertFloor},
		{"wrapper", b.wrap.XdpWrap},
		{"wrapper, new flow per run", b.wrap.XdpWrapVary},
	} {
		pi := ProgramInfo{Name: p.name}
		info, err := p.prog.Info()
		if err == nil {
			if insns, err := info.Instructions(); err == nil {
				pi.Xlated = len(insns)
				for _, ins := range insns {
					if ins.OpCode.JumpOp() == asm.Call {
						pi.Calls++
					}
				}
			}
			pi.Verified, _ = info.VerifiedInstructions()
			pi.Jited, _ = info.JitedSize()
		}
		out = append(out, pi)
	}
	return out
}
