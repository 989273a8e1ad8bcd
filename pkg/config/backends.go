package config

// A VIP's backends, and whether its ring has room for them.

import (
	"math"
	"net/netip"

	"github.com/lbdproj/lbd/pkg/consistenthash"
)

func (d *decoder) backends(f *fields, vipPath string, v VIP, addrOK bool) []Backend {
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
	active := 0
	for i, it := range items {
		path := index(vipPath+".backends", i)
		it = resolve(it)
		b := Backend{Weight: 1, Pos: d.pos(it)}
		bf := d.mapping(it, path, "address", "weight")
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
		bs = append(bs, b)
	}
	if len(bs) < len(items) {
		return bs // some backends are unreadable: the counts below would mislead
	}
	if active == 0 {
		d.errorf(at, vipPath+".backends", "every backend has weight 0: no backend can take new flows")
		return bs
	}
	if need := uint64(consistenthash.MinSlotsPerMember) * uint64(active); uint64(v.RingSize) <= need {
		path, n := vipPath+".backends", at
		if e, ok := f.m["ring_size"]; ok {
			path, n = vipPath+".ring_size", e.val
		}
		d.errorf(n, path, "ring_size %d is too small for %d backends with weight > 0: it must exceed %d × %d = %d for an even spread (next prime: %d)",
			v.RingSize, active, consistenthash.MinSlotsPerMember, active, need, nextPrime(need))
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
