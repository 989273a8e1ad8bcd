// apply.go: making the maps say what the control plane wants: VIPs, backends, rings, the
// address filter, each change in an order a packet in flight never sees half of.

package dataplane

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// Apply makes the data path serve exactly these VIPs. Each ring is built aside and swapped
// in with one map update, so a packet sees the old ring or the new one. VIPs and backends
// that are no longer listed are removed after the new state is in place.
func (lb *LB) Apply(vips []VIP) error {
	lb.mu.Lock()
	defer lb.mu.Unlock()

	if len(vips) > MaxVIPs {
		return fmt.Errorf("%d VIPs: the data path holds at most %d", len(vips), MaxVIPs)
	}
	keep := map[pairKey]bool{}
	keepVIP := map[VIPKey]bool{}
	for _, v := range vips {
		keepVIP[v.Key] = true
		for _, b := range v.Backends {
			keep[pairKey{v.Key, b.Addr}] = true
		}
	}
	if len(keep) > MaxBackends {
		return fmt.Errorf("%d VIP-backend pairs: the data path holds at most %d", len(keep), MaxBackends)
	}
	// removals first free ids, but they must not disturb VIPs that stay: only gone ones
	for key, st := range lb.vips {
		if !keepVIP[key] {
			if err := lb.deleteVIP(key, st); err != nil {
				return err
			}
		}
	}
	for pk, slot := range lb.pairs {
		if !keep[pk] {
			if err := lb.objs.Backends.Put(slot.id, lbBackend{}); err != nil {
				return fmt.Errorf("clear backend %s of %s: %w", pk.addr, pk.vip, err)
			}
			delete(lb.pairs, pk)
		}
	}
	wildcards := uint32(0)
	filter := make([]uint64, vipFilterWords)
	for _, v := range vips {
		if v.Key.Port == 0 {
			wildcards++
		}
		bit := vipFilterBit(v.Key.Addr)
		filter[bit/64] |= 1 << (bit % 64)
	}
	// the address filter lets new VIPs in before they are written, and forgets removed ones
	// after they are gone: first the union of old and new, at the end the new alone
	union := make([]uint64, vipFilterWords)
	for w := range union {
		union[w] = filter[w] | lb.filter[w]
	}
	if err := lb.writeFilter(union); err != nil {
		return err
	}
	addrs := map[netip.Addr]bool{}
	for _, v := range vips {
		addrs[v.Key.Addr] = true
		if !lb.addrs[v.Key.Addr] {
			if err := lb.objs.VipAddrs.Put(vipKeyTo(VIPKey{Addr: v.Key.Addr}), uint32(1)); err != nil {
				return fmt.Errorf("write vip address %s: %w", v.Key.Addr, err)
			}
			lb.addrs[v.Key.Addr] = true
		}
	}
	// switch the wildcard lookup on before a wildcard VIP appears, off after the last goes
	if wildcards > 0 {
		if err := lb.objs.LbCtl.Put(uint32(0), lbLbCtl{WildcardVips: wildcards}); err != nil {
			return fmt.Errorf("write lb_ctl: %w", err)
		}
	}
	for _, v := range vips {
		if err := lb.applyVIP(v); err != nil {
			return fmt.Errorf("vip %s: %w", v.Key, err)
		}
	}
	if wildcards == 0 {
		if err := lb.objs.LbCtl.Put(uint32(0), lbLbCtl{}); err != nil {
			return fmt.Errorf("write lb_ctl: %w", err)
		}
	}
	for a := range lb.addrs {
		if !addrs[a] {
			if err := lb.objs.VipAddrs.Delete(vipKeyTo(VIPKey{Addr: a})); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("delete vip address %s: %w", a, err)
			}
			delete(lb.addrs, a)
		}
	}
	if err := lb.writeQUICServers(vips); err != nil {
		return err
	}
	return lb.writeFilter(filter)
}

// vipFilterBit mirrors vip_filter_bit_* in bpf/hash.h.
func vipFilterBit(a netip.Addr) uint32 {
	var w uint32
	if a.Is4() {
		b := a.As4()
		w = le(b[:])
	} else {
		b := a.As16()
		w = le(b[0:]) ^ le(b[4:]) ^ le(b[8:]) ^ le(b[12:])
	}
	return (w * vipFilterMul) >> 16
}

// writeFilter writes the words of vip_filter that differ from what was last written.
func (lb *LB) writeFilter(words []uint64) error {
	for w, v := range words {
		if lb.filter[w] == v {
			continue
		}
		if err := lb.objs.VipFilter.Put(uint32(w), v); err != nil {
			return fmt.Errorf("write vip filter: %w", err)
		}
		lb.filter[w] = v
	}
	return nil
}

func (lb *LB) applyVIP(v VIP) error {
	if !v.Key.Addr.IsValid() {
		return errors.New("no address")
	}
	st, exists := lb.vips[v.Key]
	if !exists {
		id, err := lb.freeID(func(s vipState) uint32 { return s.id }, uint32(MaxVIPs))
		if err != nil {
			return err
		}
		st.id = id
		// a new VIP starts its counters from zero
		if err := lb.objs.VipStats.Put(id, make([]lbCounter, ebpf.MustPossibleCPU())); err != nil {
			return fmt.Errorf("reset counters: %w", err)
		}
	}
	var flags uint32
	if v.GUE {
		flags |= vipFlagGUE
	}
	if v.QUIC {
		flags |= vipFlagQUIC
	}
	ids := make([]uint32, len(v.Backends))
	for i, b := range v.Backends {
		id, err := lb.putBackend(st.id, flags, v.Key, b)
		if err != nil {
			return err
		}
		ids[i] = id
	}
	ring := make([]uint32, len(v.Ring))
	for i, idx := range v.Ring {
		if int(idx) >= len(ids) {
			return fmt.Errorf("ring slot %d names backend %d of %d", i, idx, len(ids))
		}
		ring[i] = ids[idx]
	}
	ringID := st.ringID
	if len(ring) > 0 {
		inner, err := lb.newRing(ring)
		if err != nil {
			return err
		}
		defer inner.Close()
		if !exists || st.ringSize != len(ring) {
			// a ring of another size gets a fresh slot, then the meta points at it in one update
			if ringID, err = lb.freeID(func(s vipState) uint32 { return s.ringID }, 2*uint32(MaxVIPs)); err != nil {
				return err
			}
		}
		if err := lb.objs.Rings.Put(ringID, inner); err != nil {
			return fmt.Errorf("swap ring: %w", err)
		}
	}
	// an empty ring (no usable backend) leaves ring_size 0: the VIP's packets are dropped
	// and counted as no-backend rather than handed to a host that does not own the VIP
	meta := lbVipMeta{VipId: st.id, RingId: ringID, Flags: flags, RingSize: uint32(len(ring))}
	if err := lb.objs.Vips.Put(vipKeyTo(v.Key), meta); err != nil {
		return fmt.Errorf("write vip: %w", err)
	}
	if exists && st.ringSize > 0 && (ringID != st.ringID || len(ring) == 0) {
		if err := lb.objs.Rings.Delete(st.ringID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("drop old ring: %w", err)
		}
	}
	lb.vips[v.Key] = vipState{id: st.id, ringID: ringID, ringSize: len(ring), ring: v.Ring, ids: ids}
	return nil
}

func (lb *LB) newRing(ring []uint32) (*ebpf.Map, error) {
	spec := lb.innerSpec()
	spec.MaxEntries = uint32(len(ring))
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create ring of %d slots: %w", len(ring), err)
	}
	keys := make([]uint32, len(ring))
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := m.BatchUpdate(keys, ring, nil); err != nil {
		m.Close()
		return nil, fmt.Errorf("fill ring: %w", err)
	}
	return m, nil
}

func (lb *LB) deleteVIP(key VIPKey, st vipState) error {
	if err := lb.objs.Vips.Delete(vipKeyTo(key)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete vip %s: %w", key, err)
	}
	if err := lb.objs.Rings.Delete(st.ringID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete ring of %s: %w", key, err)
	}
	delete(lb.vips, key)
	return nil
}

// Ring reads back the backend addresses, slot by slot, of a VIP's live ring.
func (lb *LB) Ring(key VIPKey) ([]netip.Addr, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	st, ok := lb.vips[key]
	if !ok {
		return nil, fmt.Errorf("vip %s: not in the data path", key)
	}
	inner, err := lb.ringMap(st.ringID)
	if err != nil {
		return nil, err
	}
	defer inner.Close()
	addrByID := map[uint32]netip.Addr{}
	for pk, s := range lb.pairs {
		if pk.vip == key {
			addrByID[s.id] = pk.addr
		}
	}
	out := make([]netip.Addr, 0, st.ringSize)
	var slot, id uint32
	for slot = 0; slot < uint32(st.ringSize); slot++ {
		if err := inner.Lookup(slot, &id); err != nil {
			return nil, err
		}
		out = append(out, addrByID[id])
	}
	return out, nil
}

// writeQUICServers makes quic_servers map each QUIC VIP's server ids to its backends' ids.
func (lb *LB) writeQUICServers(vips []VIP) error {
	want := map[uint32]uint32{}
	for _, v := range vips {
		if !v.QUIC {
			continue
		}
		vid := lb.vips[v.Key].id
		for _, b := range v.Backends {
			if b.QUICServerID == 0 {
				continue
			}
			want[vid<<16|uint32(b.QUICServerID)] = lb.pairs[pairKey{v.Key, b.Addr}].id
		}
	}
	for k, id := range want {
		if err := lb.objs.QuicServers.Put(k, id); err != nil {
			return fmt.Errorf("write quic server %#x: %w", k, err)
		}
	}
	var stale []uint32
	var k, id uint32
	it := lb.objs.QuicServers.Iterate()
	for it.Next(&k, &id) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := lb.objs.QuicServers.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete quic server %#x: %w", k, err)
		}
	}
	return nil
}
