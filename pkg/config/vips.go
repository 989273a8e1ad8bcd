package config

// The vips list: each VIP, and the checks across VIPs (names, addresses, limits).

import (
	"net/netip"
	"regexp"

	"github.com/lbdproj/lbd/pkg/consistenthash"
	"gopkg.in/yaml.v3"
)

var vipNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

type vipKey struct {
	addr  netip.Addr
	port  uint16
	proto uint8
}

func (d *decoder) vips(root *fields) []VIP {
	items, ok := root.list("vips")
	if !ok {
		if !root.has("vips") {
			d.warnf(root.node, "vips", "no VIPs: every packet is passed to the host")
		}
		return nil
	}
	if len(items) == 0 {
		d.warnf(root.m["vips"].val, "vips", "no VIPs: every packet is passed to the host")
	}
	type seen struct {
		i   int
		pos Position
	}
	names := map[string]seen{}
	keys := map[vipKey]seen{}
	var vips []VIP
	for i, it := range items {
		path := index("vips", i)
		v, r := d.vip(it, path)
		if r.name != nil {
			if prev, ok := names[v.Name]; ok {
				d.errorf(r.name, path+".name", "%q is already the name of vips[%d] (%s)", v.Name, prev.i, prev.pos)
			} else {
				names[v.Name] = seen{i, d.pos(r.name)}
			}
		}
		if r.keyOK {
			k := vipKey{v.Address, v.Port, v.Proto}
			if prev, ok := keys[k]; ok {
				d.errorf(resolve(it), path, "%s/%s is already served by vips[%d] (%s)",
					netip.AddrPortFrom(v.Address, v.Port), v.Protocol, prev.i, prev.pos)
			} else {
				keys[k] = seen{i, v.Pos}
			}
		}
		vips = append(vips, v)
	}
	at := root.m["vips"].key
	if len(vips) > MaxVIPs {
		d.errorf(at, "vips", "%d VIPs are more than the data path holds (%d)", len(vips), MaxVIPs)
	}
	pairs := 0
	for _, v := range vips {
		pairs += len(v.Backends)
	}
	if pairs > MaxBackends {
		d.errorf(at, "vips", "%d backends over all VIPs are more than the data path holds (%d; a backend behind two VIPs counts twice)", pairs, MaxBackends)
	}
	return vips
}

// vipRefs carries what the cross-VIP checks need beyond the VIP itself.
type vipRefs struct {
	name  *yaml.Node // nil when the name is missing or bad
	keyOK bool       // address, port and protocol are all valid
}

func (d *decoder) vip(n *yaml.Node, path string) (VIP, vipRefs) {
	n = resolve(n)
	v := VIP{Protocol: "tcp", Proto: 6, Encap: DefaultEncap, Pos: d.pos(n)}
	var r vipRefs
	f := d.mapping(n, path, "name", "address", "port", "protocol", "ring_size", "algorithm", "encap", "quic", "backends", "health", "bgp")
	if f == nil {
		return v, r
	}
	if n, s, ok := f.scalar("name"); ok {
		switch {
		case !vipNameRE.MatchString(s):
			d.errorf(n, path+".name", "%q is not a VIP name: lowercase letters, digits, '_' and '-', starting with a letter or digit", s)
		case len(s) > 63:
			d.errorf(n, path+".name", "%q is longer than 63 characters", s)
		default:
			r.name = n
		}
		v.Name = s
	} else if !f.has("name") {
		f.missing("name")
	}
	addrOK, portOK, protoOK := false, false, true
	if a, _, ok := f.addr("address"); ok {
		v.Address, addrOK = a, true
	} else if !f.has("address") {
		f.missing("address")
	}
	if f.port("port", 0, &v.Port) {
		portOK = true
	} else if !f.has("port") {
		f.missing("port")
	}
	if f.has("protocol") {
		protoOK = oneOf(f, "protocol", &v.Protocol, "tcp", "udp")
	}
	if v.Protocol == "udp" {
		v.Proto = 17
	}
	r.keyOK = addrOK && portOK && protoOK
	if n, ok := f.get("ring_size"); ok {
		if size, ok := f.uint("ring_size", 2, MaxRingSize); ok {
			v.RingSize = uint32(size)
			if !consistenthash.IsPrime(uint32(size)) {
				d.errorf(n, path+".ring_size", "%d is not prime, which Maglev needs (nearest primes: %d and %d)",
					size, consistenthash.PrevPrime(uint32(size)), consistenthash.NextPrime(uint32(size)))
			}
		}
	}
	oneOf(f, "algorithm", &v.Algorithm, consistenthash.Algorithms()...)
	oneOf(f, "encap", &v.Encap, EncapIPIP, EncapGUE)
	if f.bool("quic", &v.QUIC) && v.QUIC && v.Protocol != "udp" {
		n, _ := f.get("quic")
		d.errorf(n, path+".quic", "QUIC runs over UDP: set protocol: udp")
	}
	v.Backends = d.backends(f, path, &v, addrOK)
	v.Health = d.health(f, path, v, portOK)
	v.BGP = d.vipBGP(f, path, len(v.Backends))
	return v, r
}
