// recover.go: a restarted lbd rebuilds its id tables from the maps an earlier one pinned.

package dataplane

import (
	"net/netip"

	"github.com/cilium/ebpf"
)

// recover rebuilds the id tables from pinned maps so that a restarted lbd reuses the same
// VIP, ring and backend ids and the recorded flows keep pointing at the right backends.
func (lb *LB) recover() error {
	byID := map[uint32]VIPKey{}
	var k lbVipKey
	var m lbVipMeta
	it := lb.objs.Vips.Iterate()
	for it.Next(&k, &m) {
		key := vipKeyFrom(k)
		// the size from the VIP's meta, not the inner map: opening a map by id takes
		// CAP_SYS_ADMIN, which lbd runs without (configs/systemd/lbd.service)
		lb.vips[key] = vipState{id: m.VipId, ringID: m.RingId, ringSize: int(m.RingSize)}
		byID[m.VipId] = key
	}
	if err := it.Err(); err != nil {
		return err
	}
	lb.addrs = map[netip.Addr]bool{}
	var ak lbVipKey
	var one uint32
	ait := lb.objs.VipAddrs.Iterate()
	for ait.Next(&ak, &one) {
		lb.addrs[vipKeyFrom(ak).Addr] = true
	}
	if err := ait.Err(); err != nil {
		return err
	}
	lb.filter = make([]uint64, vipFilterWords)
	for w := range lb.filter {
		if err := lb.objs.VipFilter.Lookup(uint32(w), &lb.filter[w]); err != nil {
			return err
		}
	}
	var be lbBackend
	for id := uint32(1); id < backendIDs; id++ {
		if err := lb.objs.Backends.Lookup(id, &be); err != nil {
			return err
		}
		if be.Gen == 0 {
			continue
		}
		vk, ok := byID[be.VipId]
		if !ok {
			continue
		}
		lb.pairs[pairKey{vk, addrFrom(be.Addr.V6, be.Flags&beFlagV6 != 0)}] = beSlot{id, be.Gen}
		lb.nextGen = max(lb.nextGen, be.Gen)
	}
	return nil
}

// ringMap opens the inner ring map in slot ringID of rings (it takes CAP_SYS_ADMIN).
func (lb *LB) ringMap(ringID uint32) (*ebpf.Map, error) {
	var innerID ebpf.MapID
	if err := lb.objs.Rings.Lookup(ringID, &innerID); err != nil {
		return nil, err
	}
	return ebpf.NewMapFromID(innerID)
}
