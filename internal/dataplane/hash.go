package dataplane

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Flow is a transport 5-tuple as the LB sees it, ports in host byte order.
type Flow struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
}

const hashInit = 0x9e3779b9

// hash3 mirrors lb_hash3 in bpf/hash.h: lookup3's final() avalanche over three words.
func hash3(a, b, c, seed uint32) uint32 {
	a += hashInit + seed
	b += hashInit + seed
	c += seed
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}

// le loads four bytes the way the little-endian BPF target loads a __be32 field.
func le(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// portWord is the two ports as the BPF program loads them: network-order bytes read as a
// little-endian u32 (source port first).
func portWord(sport, dport uint16) uint32 {
	var b [4]byte
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	return le(b[:])
}

// Hash is the flow hash the data path computes (bpf/hash.h), the same on every LB node
// that shares the seed.
func (f Flow) Hash(seed uint32) uint32 {
	ports := portWord(f.SrcPort, f.DstPort)
	if f.Src.Is4() {
		s, d := f.Src.As4(), f.Dst.As4()
		return hash3(le(s[:]), le(d[:]), ports, seed^uint32(f.Proto))
	}
	s, d := f.Src.As16(), f.Dst.As16()
	h := hash3(le(s[0:]), le(s[4:]), le(s[8:]), seed)
	h = hash3(le(s[12:]), le(d[0:]), le(d[4:]), h)
	return hash3(le(d[8:]), le(d[12:]), ports, h^uint32(f.Proto))
}

// Slot is the ring slot the data path indexes for this flow.
func (f Flow) Slot(seed, ringSize uint32) uint32 {
	return f.Hash(seed) % ringSize
}

// EncapSource is the outer source xdp_lb gives flow f inside prefix (Config.EncapPrefix):
// the flow hash picks the host part, never the prefix's first or last address.
func EncapSource(prefix netip.Prefix, f Flow, seed uint32) netip.Addr {
	bits := prefix.Addr().BitLen() - prefix.Bits()
	mask := uint32(1)<<bits - 1
	h := f.Hash(seed) & mask
	switch h {
	case 0:
		h = 1
	case mask:
		h = mask - 1
	}
	b := prefix.Masked().Addr().AsSlice()
	n := len(b)
	binary.BigEndian.PutUint32(b[n-4:], binary.BigEndian.Uint32(b[n-4:])|h)
	a, _ := netip.AddrFromSlice(b)
	return a
}
