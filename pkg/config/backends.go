package config

// A VIP's backends, and whether its ring has room for them (or, without ring_size, the ring
// size that has).

import (
	"fmt"
	"math"
	"net/netip"

	"github.com/lbdproj/lbd/pkg/consistenthash"
)

// backends reads v's backends and checks v.RingSize against them; a VIP without ring_size
// (v.RingSize 0) gets the smallest of consistenthash.Sizes that has room.
func (d *decoder) backends(f *fields, vipPath string, v *VIP, addrOK bool) []Backend {
	items, ok := f.list("backends")
	if !ok {
		if !f.has("backends") {
			f.missing("backends")
		}
		return nil
	}
	at := f.m["backends"].key
	if len(items) == 0 {
		d.errorf(at, vipPath+".backends", "is empty: a VIP needs at least one backend")
		return nil
	}
	type first struct {
		i   int
		pos Position
	}
	var bs []Backend
	seen := map[netip.Addr]first{}
	sids := map[uint16]int{}
	active := 0
	for i, it := range items {
		path := index(vipPath+".backends", i)
		it = resolve(it)
		b := Backend{Weight: 1, Pos: d.pos(it)}
		bf := d.mapping(it, path, "address", "weight", "quic_server_id")
		if bf == nil {
			continue
		}
		if a, n, ok := bf.addr("address"); ok {
			b.Address = a
			switch prev, dup := seen[a]; {
			case dup:
				d.errorf(n, path+".address", "%s is already backends[%d] (%s)", a, prev.i, prev.pos)
			case addrOK && a == v.Address:
				d.errorf(n, path+".address", "%s is the VIP's own address", a)
			case addrOK && v.Address.Is6() && a.Is4():
				d.errorf(n, path+".address", "%s is IPv4 but the VIP is IPv6: there is no 6in4 encapsulation", a)
			default:
				seen[a] = first{i, b.Pos}
			}
		} else if !bf.has("address") {
			bf.missing("address")
		}
		if w, ok := bf.uint("weight", 0, math.MaxUint32); ok {
			b.Weight = uint32(w)
		}
		if b.Weight > 0 {
			active++
		}
		if n, ok := bf.get("quic_server_id"); ok {
			if id, ok := bf.uint("quic_server_id", 1, math.MaxUint16); ok {
				b.QUICServerID = uint16(id)
				switch prev, dup := sids[b.QUICServerID]; {
				case !v.QUIC:
					d.errorf(n, path+".quic_server_id", "the VIP does not route QUIC by connection id: set quic: true")
				case dup:
					d.errorf(n, path+".quic_server_id", "%d is already backends[%d]'s", id, prev)
				default:
					sids[b.QUICServerID] = i
				}
			}
		} else if v.QUIC {
			d.warnf(bf.node, path, "no quic_server_id: this backend's QUIC connections cannot follow a client whose address or port changes")
		}
		bs = append(bs, b)
	}
	if len(bs) < len(items) {
		return bs // some backends are unreadable: the counts below would mislead
	}
	if active == 0 {
		d.errorf(at, vipPath+".backends", "every backend has weight 0: no backend can take new flows")
		return bs
	}
	need := uint64(consistenthash.MinSlotsPerMember) * uint64(active)
	if v.RingSize == 0 {
		size, ok := consistenthash.SizeFor(active)
		if !ok {
			d.errorf(at, vipPath+".backends", "%d backends with weight > 0 need a ring of more than %d × %d = %d slots, more than the largest the data path holds (%d): split them over more VIPs",
				active, consistenthash.MinSlotsPerMember, active, need, MaxRingSize)
			return bs
		}
		v.RingSize, v.RingSizeAuto = size, true
		return bs
	}
	if uint64(v.RingSize) <= need {
		path, n := vipPath+".backends", at
		if e, ok := f.m["ring_size"]; ok {
			path, n = vipPath+".ring_size", e.val
		}
		hint := ""
		if auto, ok := consistenthash.SizeFor(active); ok {
			hint = fmt.Sprintf("; without ring_size lbd picks %d", auto)
		}
		d.errorf(n, path, "ring_size %d is too small for %d backends with weight > 0: it must exceed %d × %d = %d for an even spread (next prime: %d%s)",
			v.RingSize, active, consistenthash.MinSlotsPerMember, active, need, nextPrime(need), hint)
	}
	return bs
}

// nextPrime is the ring size to suggest for need slots: the smallest prime > need (0 past 32
// bits, which no config reaches: it would take 43 million backends behind one VIP).
func nextPrime(need uint64) uint64 {
	if need >= math.MaxUint32 {
		return 0
	}
	return uint64(consistenthash.NextPrime(uint32(need)))
}
