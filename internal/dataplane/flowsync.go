// flowsync.go: the data path's side of flow sync (docs/ARCHITECTURE.md, "Flow sync"): finding
// the flows at risk in the flow tables (adopted.go writes the flows other LB nodes shared
// into the maps xdp_lb reads on a flow-table miss, bpf/flowsync.h).

package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
)

// SharedFlow is a flow as LB nodes share it: its 5-tuple, its VIP, and the backend that
// holds it named by address (backend ids and generations are each node's own).
type SharedFlow struct {
	Flow    Flow
	VIP     VIPKey
	Backend netip.Addr
}

// ScanStats says what one scan of the flow tables saw.
type ScanStats struct {
	Scanned  int // flow-table entries read, both families
	AtRisk   int // entries whose backend the ring no longer picks: visited
	Down     int // entries on a backend that is down here: not shared
	Stale    int // entries whose backend is gone or whose id was reused
	Unknown  int // entries of a VIP whose ring this lbd has not written yet (just restarted)
	Duration time.Duration
}

// scanBatch is how many entries one BPF_MAP_LOOKUP_BATCH reads. A hash map refuses a batch
// smaller than one of its buckets (ENOSPC); buckets hold a handful.
const scanBatch = 4096

// FlowScanner scans an LB's flow tables for the flows at risk, with buffers it keeps
// between scans; it is not safe for concurrent use.
type FlowScanner struct {
	lb   *LB
	k4   []lbFlowKeyV4
	k6   []lbFlowKeyV6
	vals []lbFlowVal
}

// NewFlowScanner returns a scanner of lb's flow tables.
func (lb *LB) NewFlowScanner() *FlowScanner {
	return &FlowScanner{lb: lb, k4: make([]lbFlowKeyV4, scanBatch), k6: make([]lbFlowKeyV6, scanBatch), vals: make([]lbFlowVal, scanBatch)}
}

// scanBackend is what a scan needs to know of a backend id.
type scanBackend struct {
	ok       bool
	down     bool
	gen      uint32
	vip      VIPKey
	addr     netip.Addr
	ring     []uint32 // its VIP's ring, by slot: an index into ringIDs (empty: no usable backend)
	ringIDs  []uint32
	ringSeen bool // the ring is known (an Apply wrote it since this lbd started)
}

// snapshot reads, under the LB's lock, every backend id in use with its VIP's ring as last
// applied (no inner map is opened: that takes CAP_SYS_ADMIN, which lbd runs without).
func (s *FlowScanner) snapshot() ([]scanBackend, error) {
	lb := s.lb
	lb.mu.Lock()
	defer lb.mu.Unlock()
	out := make([]scanBackend, backendIDs)
	var be lbBackend
	for pk, slot := range lb.pairs {
		if err := lb.objs.Backends.Lookup(slot.id, &be); err != nil {
			return nil, fmt.Errorf("backend %s of %s: %w", pk.addr, pk.vip, err)
		}
		st := lb.vips[pk.vip]
		out[slot.id] = scanBackend{ok: true, down: be.Flags&beFlagDown != 0, gen: slot.gen, vip: pk.vip, addr: pk.addr,
			ring: st.ring, ringIDs: st.ids, ringSeen: st.ids != nil}
	}
	return out, nil
}

// AtRisk scans both flow tables and calls visit with every flow whose recorded backend is
// not the one its VIP's ring picks for it now: the flows that would break if the router
// moved them to another LB node (whose ring picks what this one's does). Flows on a
// backend that is down here, gone, or whose id was reused are not visited.
func (s *FlowScanner) AtRisk(visit func(SharedFlow)) (ScanStats, error) {
	start := time.Now()
	var st ScanStats
	bes, err := s.snapshot()
	if err != nil {
		return st, err
	}
	seed := s.lb.cfg.HashSeed
	// judge is the verdict on one entry: at risk (and its backend), or why not
	judge := func(fv lbFlowVal, hash uint32) *scanBackend {
		if fv.BackendId >= uint32(len(bes)) || !bes[fv.BackendId].ok || bes[fv.BackendId].gen != fv.Gen {
			st.Stale++
			return nil
		}
		b := &bes[fv.BackendId]
		if b.down {
			st.Down++
			return nil
		}
		if !b.ringSeen {
			st.Unknown++
			return nil
		}
		if len(b.ring) > 0 && b.ringIDs[b.ring[hash%uint32(len(b.ring))]] == fv.BackendId {
			return nil
		}
		st.AtRisk++
		return b
	}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := s.lb.objs.FlowsV4.BatchLookup(&cursor, s.k4, s.vals, nil)
		done := errors.Is(err, ebpf.ErrKeyNotExist)
		if err != nil && !done {
			return st, fmt.Errorf("scan flows_v4: %w", err)
		}
		st.Scanned += n
		for i := range n {
			if b := judge(s.vals[i], hashKeyV4(&s.k4[i], seed)); b != nil {
				visit(SharedFlow{Flow: flowFromKeyV4(&s.k4[i]), VIP: b.vip, Backend: b.addr})
			}
		}
		if done {
			break
		}
	}
	cursor = ebpf.MapBatchCursor{}
	for {
		n, err := s.lb.objs.FlowsV6.BatchLookup(&cursor, s.k6, s.vals, nil)
		done := errors.Is(err, ebpf.ErrKeyNotExist)
		if err != nil && !done {
			return st, fmt.Errorf("scan flows_v6: %w", err)
		}
		st.Scanned += n
		for i := range n {
			if b := judge(s.vals[i], hashKeyV6(&s.k6[i], seed)); b != nil {
				visit(SharedFlow{Flow: flowFromKeyV6(&s.k6[i]), VIP: b.vip, Backend: b.addr})
			}
		}
		if done {
			break
		}
	}
	st.Duration = time.Since(start)
	return st, nil
}

// hashKeyV4 is Flow.Hash on a map key as it comes from the kernel, whose fields hold the
// network-order bytes loaded little-endian, as the BPF program loads them (bpf/hash.h).
func hashKeyV4(k *lbFlowKeyV4, seed uint32) uint32 {
	ports := uint32(k.Dport)<<16 | uint32(k.Sport)
	return hash3(k.Src, k.Dst, ports, seed^uint32(k.Proto))
}

func hashKeyV6(k *lbFlowKeyV6, seed uint32) uint32 {
	ports := uint32(k.Dport)<<16 | uint32(k.Sport)
	h := hash3(k.Src[0], k.Src[1], k.Src[2], seed)
	h = hash3(k.Src[3], k.Dst[0], k.Dst[1], h)
	return hash3(k.Dst[2], k.Dst[3], ports, h^uint32(k.Proto))
}

func flowFromKeyV4(k *lbFlowKeyV4) Flow {
	return Flow{Src: addrFrom([4]uint32{k.Src}, false), Dst: addrFrom([4]uint32{k.Dst}, false),
		SrcPort: htons(k.Sport), DstPort: htons(k.Dport), Proto: k.Proto}
}

func flowFromKeyV6(k *lbFlowKeyV6) Flow {
	return Flow{Src: addrFrom(k.Src, true), Dst: addrFrom(k.Dst, true),
		SrcPort: htons(k.Sport), DstPort: htons(k.Dport), Proto: k.Proto}
}

func keyV4(f Flow) lbFlowKeyV4 {
	s, d := f.Src.As4(), f.Dst.As4()
	return lbFlowKeyV4{Src: le(s[:]), Dst: le(d[:]), Sport: htons(f.SrcPort), Dport: htons(f.DstPort), Proto: f.Proto}
}

func keyV6(f Flow) lbFlowKeyV6 {
	s, d := f.Src.As16(), f.Dst.As16()
	k := lbFlowKeyV6{Sport: htons(f.SrcPort), Dport: htons(f.DstPort), Proto: f.Proto}
	for i := range 4 {
		k.Src[i], k.Dst[i] = le(s[4*i:]), le(d[4*i:])
	}
	return k
}

// flowSyncEventNames name what the adopted lookup found (enum flowsync_event,
// bpf/flowsync.h); a test checks every value of the enum has a name.
var flowSyncEventNames = map[lbFlowsyncEvent]string{
	lbFlowsyncEventFLOWSYNC_ADOPTED_HIT:   "hit",
	lbFlowsyncEventFLOWSYNC_ADOPTED_STALE: "stale",
}

// FlowSyncEvents counts what the adopted lookup found on flow-table misses, summed over
// CPUs: "hit" (a moved flow kept its backend) and "stale" (the entry named a backend that
// is down, gone or of another VIP here, and the ring decided).
func (lb *LB) FlowSyncEvents() (map[string]uint64, error) {
	out := make(map[string]uint64, len(flowSyncEventNames))
	for e, name := range flowSyncEventNames {
		var per []uint64
		if err := lb.objs.FlowsyncEvents.Lookup(uint32(e), &per); err != nil {
			return nil, fmt.Errorf("read flow sync event %s: %w", name, err)
		}
		var n uint64
		for _, p := range per {
			n += p
		}
		out[name] = n
	}
	return out, nil
}
