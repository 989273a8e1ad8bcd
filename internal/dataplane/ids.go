// ids.go: VIP, ring and backend ids, and the generations that keep a reused id from
// inheriting another backend's flows.

package dataplane

import (
	"fmt"

	"github.com/cilium/ebpf"
)

func (lb *LB) putBackend(vipID, vipFlags uint32, vk VIPKey, b Backend) (uint32, error) {
	pk := pairKey{vk, b.Addr}
	slot, ok := lb.pairs[pk]
	if !ok {
		id, err := lb.freeBackendID()
		if err != nil {
			return 0, err
		}
		lb.nextGen++
		slot = beSlot{id: id, gen: lb.nextGen}
		if err := lb.objs.BackendStats.Put(id, make([]lbCounter, ebpf.MustPossibleCPU())); err != nil {
			return 0, fmt.Errorf("reset backend counters: %w", err)
		}
	}
	e := lbBackend{Gen: slot.gen, Ifindex: uint32(b.Ifindex), VipId: vipID, VipFlags: vipFlags}
	a := b.Addr.As16()
	if b.Addr.Is4() {
		a4 := b.Addr.As4()
		a = [16]byte{}
		copy(a[:], a4[:])
	} else {
		e.Flags |= beFlagV6
	}
	for i := range 4 {
		e.Addr.V6[i] = le(a[4*i:])
	}
	if b.Down {
		e.Flags |= beFlagDown
	}
	copy(e.Dmac[:], b.DstMAC)
	copy(e.Smac[:], b.SrcMAC)
	if err := lb.objs.Backends.Put(slot.id, e); err != nil {
		return 0, fmt.Errorf("write backend %s: %w", b.Addr, err)
	}
	lb.pairs[pk] = slot
	return slot.id, nil
}

func (lb *LB) freeBackendID() (uint32, error) {
	used := make([]bool, backendIDs)
	for _, s := range lb.pairs {
		used[s.id] = true
	}
	for id := uint32(1); id < backendIDs; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no free backend id (max %d)", MaxBackends)
}

// freeID is the lowest id in [0, limit) that no VIP uses for the field get returns.
func (lb *LB) freeID(get func(vipState) uint32, limit uint32) (uint32, error) {
	used := map[uint32]bool{}
	for _, s := range lb.vips {
		used[get(s)] = true
	}
	for id := uint32(0); id < limit; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no free id (max %d)", limit)
}
