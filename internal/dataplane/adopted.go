// adopted.go: the adopted-flow maps (bpf/flowsync.h), which hold the flows other LB nodes
// shared, with the filter and the counts that spare other misses the lookup.

package dataplane

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

const (
	// MaxAdoptedFlows is how many flows each adopted-flow map (one per family) holds.
	MaxAdoptedFlows = int(lbLbLimitLIMIT_ADOPTED_FLOWS)

	adoptedFilterShift = lbLbLimitLIMIT_ADOPTED_FILTER_SHIFT
	adoptedFilterWords = int(lbLbLimitLIMIT_ADOPTED_FILTER_WORDS)
)

// Adopted writes an LB's adopted-flow maps and keeps what xdp_lb reads beside them true:
// the filter has the bit of every flow in them set (it counts the flows of each bit), and
// the counts say how many each family holds. Not safe for concurrent use.
type Adopted struct {
	lb     *LB
	seed   uint32
	keys4  map[lbFlowKeyV4]uint32 // flow → its filter bit
	keys6  map[lbFlowKeyV6]uint32
	counts []uint32 // flows by filter bit
	dirty  map[uint32]bool
}

// OpenAdopted takes charge of lb's adopted-flow maps. It reads back what a previous lbd
// left in them (pinned), each flow with its VIP and backend address, and removes the
// entries whose backend id is unknown or reused; it rewrites the filter and the counts
// for what stays.
func (lb *LB) OpenAdopted() (*Adopted, []SharedFlow, error) {
	a := &Adopted{lb: lb, seed: lb.cfg.HashSeed, keys4: map[lbFlowKeyV4]uint32{}, keys6: map[lbFlowKeyV6]uint32{},
		counts: make([]uint32, adoptedFilterWords*64), dirty: map[uint32]bool{}}
	lb.mu.Lock()
	byID := map[uint32]pairKey{}
	gens := map[uint32]uint32{}
	for pk, slot := range lb.pairs {
		byID[slot.id], gens[slot.id] = pk, slot.gen
	}
	lb.mu.Unlock()
	var out []SharedFlow
	var stale4 []lbFlowKeyV4
	var stale6 []lbFlowKeyV6
	take := func(f Flow, v lbFlowVal) bool {
		pk, ok := byID[v.BackendId]
		if !ok || gens[v.BackendId] != v.Gen {
			return false
		}
		out = append(out, SharedFlow{Flow: f, VIP: pk.vip, Backend: pk.addr})
		return true
	}
	var k4 lbFlowKeyV4
	var k6 lbFlowKeyV6
	var v lbFlowVal
	it := lb.objs.AdoptedV4.Iterate()
	for it.Next(&k4, &v) {
		if take(flowFromKeyV4(&k4), v) {
			a.add4(k4)
		} else {
			stale4 = append(stale4, k4)
		}
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("read adopted_v4: %w", err)
	}
	it = lb.objs.AdoptedV6.Iterate()
	for it.Next(&k6, &v) {
		if take(flowFromKeyV6(&k6), v) {
			a.add6(k6)
		} else {
			stale6 = append(stale6, k6)
		}
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("read adopted_v6: %w", err)
	}
	if err := a.deleteKeys(stale4, stale6); err != nil {
		return nil, nil, err
	}
	// the whole filter: a previous run's may hold bits of flows no longer there
	for w := range adoptedFilterWords {
		a.dirty[uint32(w)] = true
	}
	return a, out, a.publish()
}

func (a *Adopted) add4(k lbFlowKeyV4) {
	if _, ok := a.keys4[k]; !ok {
		bit := hashKeyV4(&k, a.seed) >> adoptedFilterShift
		a.keys4[k] = bit
		a.count(bit, 1)
	}
}

func (a *Adopted) add6(k lbFlowKeyV6) {
	if _, ok := a.keys6[k]; !ok {
		bit := hashKeyV6(&k, a.seed) >> adoptedFilterShift
		a.keys6[k] = bit
		a.count(bit, 1)
	}
}

func (a *Adopted) count(bit uint32, d int) {
	before := a.counts[bit]
	a.counts[bit] = uint32(int(before) + d)
	if (before == 0) != (a.counts[bit] == 0) {
		a.dirty[bit/64] = true
	}
}

// Put writes flows into the adopted-flow maps, each naming its backend by this node's id
// and generation for (VIP, backend address); a flow already there is overwritten. Flows
// whose VIP or backend this node does not serve are not written and come back in
// unresolved (one already there under an older backend stays: Delete it).
func (a *Adopted) Put(flows []SharedFlow) (unresolved []SharedFlow, err error) {
	var k4 []lbFlowKeyV4
	var k6 []lbFlowKeyV6
	var v4, v6 []lbFlowVal
	lb := a.lb
	lb.mu.Lock()
	for _, f := range flows {
		slot, ok := lb.pairs[pairKey{f.VIP, f.Backend}]
		if !ok || !validFlow(f.Flow) {
			unresolved = append(unresolved, f)
			continue
		}
		v := lbFlowVal{BackendId: slot.id, Gen: slot.gen}
		if f.Flow.Src.Is4() {
			k4, v4 = append(k4, keyV4(f.Flow)), append(v4, v)
		} else {
			k6, v6 = append(k6, keyV6(f.Flow)), append(v6, v)
		}
	}
	lb.mu.Unlock()
	// the entries first, then their filter bits and counts: xdp_lb never sees a bit or a
	// count without its flow
	if len(k4) > 0 {
		if _, err := lb.objs.AdoptedV4.BatchUpdate(k4, v4, nil); err != nil {
			return unresolved, fmt.Errorf("write adopted_v4: %w", err)
		}
	}
	if len(k6) > 0 {
		if _, err := lb.objs.AdoptedV6.BatchUpdate(k6, v6, nil); err != nil {
			return unresolved, fmt.Errorf("write adopted_v6: %w", err)
		}
	}
	for _, k := range k4 {
		a.add4(k)
	}
	for _, k := range k6 {
		a.add6(k)
	}
	return unresolved, a.publish()
}

// Delete removes flows from the adopted-flow maps; flows not there are no error.
func (a *Adopted) Delete(flows []Flow) error {
	var k4 []lbFlowKeyV4
	var k6 []lbFlowKeyV6
	for _, f := range flows {
		if !validFlow(f) {
			continue
		}
		if f.Src.Is4() {
			k4 = append(k4, keyV4(f))
		} else {
			k6 = append(k6, keyV6(f))
		}
	}
	err := a.deleteKeys(k4, k6)
	return errors.Join(err, a.publish())
}

func (a *Adopted) deleteKeys(k4 []lbFlowKeyV4, k6 []lbFlowKeyV6) error {
	var errs []error
	for _, k := range k4 {
		if err := a.lb.objs.AdoptedV4.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
			continue
		}
		if bit, ok := a.keys4[k]; ok {
			delete(a.keys4, k)
			a.count(bit, -1)
		}
	}
	for _, k := range k6 {
		if err := a.lb.objs.AdoptedV6.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
			continue
		}
		if bit, ok := a.keys6[k]; ok {
			delete(a.keys6, k)
			a.count(bit, -1)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete adopted flows: %w", errors.Join(errs...))
	}
	return nil
}

// publish writes the filter words that changed, then the counts.
func (a *Adopted) publish() error {
	if len(a.dirty) > 0 {
		keys := make([]uint32, 0, len(a.dirty))
		words := make([]uint64, 0, len(a.dirty))
		for w := range a.dirty {
			var word uint64
			for b := range 64 {
				if a.counts[w*64+uint32(b)] > 0 {
					word |= 1 << b
				}
			}
			keys, words = append(keys, w), append(words, word)
		}
		if _, err := a.lb.objs.AdoptedFilter.BatchUpdate(keys, words, nil); err != nil {
			return fmt.Errorf("write adopted_filter: %w", err)
		}
		clear(a.dirty)
	}
	ctl := lbFlowsyncCtl{AdoptedV4: uint32(len(a.keys4)), AdoptedV6: uint32(len(a.keys6))}
	if err := a.lb.objs.FlowsyncCtl.Put(uint32(0), ctl); err != nil {
		return fmt.Errorf("write flowsync_ctl: %w", err)
	}
	return nil
}

// Len is how many flows each family's map holds.
func (a *Adopted) Len() (v4, v6 int) { return len(a.keys4), len(a.keys6) }

// validFlow reports whether f can be a flow-table key: both addresses of one family.
func validFlow(f Flow) bool {
	return f.Src.IsValid() && f.Dst.IsValid() && f.Src.Is4() == f.Dst.Is4() && f.Src.Zone() == "" && f.Dst.Zone() == ""
}
