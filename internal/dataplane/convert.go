// convert.go: between Go's addresses and ports and the maps' network-order words.

package dataplane

import "net/netip"

func vipKeyTo(k VIPKey) lbVipKey {
	var out lbVipKey
	out.Port = htons(k.Port)
	out.Proto = k.Proto
	if k.Addr.Is4() {
		a := k.Addr.As4()
		out.Addr.V6[0] = le(a[:])
		out.Family = afInet
	} else {
		a := k.Addr.As16()
		for i := range 4 {
			out.Addr.V6[i] = le(a[4*i:])
		}
		out.Family = afInet6
	}
	return out
}

func vipKeyFrom(k lbVipKey) VIPKey {
	return VIPKey{Addr: addrFrom(k.Addr.V6, k.Family == afInet6), Port: htons(k.Port), Proto: k.Proto}
}

func addrFrom(w [4]uint32, v6 bool) netip.Addr {
	var b [16]byte
	for i := range 4 {
		b[4*i] = byte(w[i])
		b[4*i+1] = byte(w[i] >> 8)
		b[4*i+2] = byte(w[i] >> 16)
		b[4*i+3] = byte(w[i] >> 24)
	}
	if !v6 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// htons swaps a port between host order and the network order the maps hold.
func htons(p uint16) uint16 { return p<<8 | p>>8 }
