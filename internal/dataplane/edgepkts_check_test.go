package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
)

// What the fuzz targets' checkers know of the edge packets (bpf/lb_edge.h, bpf/be_edge.h):
// which VIP an encapsulated ICMP error or fragment is for, and what decap may change in one.

// innerVIP is the VIP (port 0: a wildcard VIP's key is tried by the caller) the LB may have
// sent inner, an IP packet, for:
//   - a whole TCP or UDP packet, or a first fragment: its destination and port, which lie
//     inside it, from a source that may start a flow; a first fragment's ports are
//     remembered in the fragment table;
//   - a later fragment: its destination and the port its first fragment left in the
//     fragment table;
//   - an ICMP error: the source and port of the TCP or UDP packet it quotes, sent from the
//     error's own destination.
func innerVIP(lb *LB, inner []byte, v6 bool) (VIPKey, error) {
	var src, dst netip.Addr
	var next uint8
	var l4 []byte
	var frag, first, more bool
	var id uint32
	if v6 {
		src, dst, next, l4 = netip.AddrFrom16([16]byte(inner[8:24])), netip.AddrFrom16([16]byte(inner[24:40])), inner[6], inner[40:]
		if next == 44 {
			if len(l4) < 8 {
				return VIPKey{}, fmt.Errorf("encapsulated a fragment header cut short")
			}
			off := binary.BigEndian.Uint16(l4[2:])
			frag, first, more, id, next = true, off&0xfff8 == 0, off&1 == 1, binary.BigEndian.Uint32(l4[4:]), l4[0]
			l4 = l4[8:]
		}
	} else {
		src, dst, next, l4 = netip.AddrFrom4([4]byte(inner[12:16])), netip.AddrFrom4([4]byte(inner[16:20])), inner[9], inner[20:]
		if fo := binary.BigEndian.Uint16(inner[6:]); fo&0x3fff != 0 {
			frag, first, more, id = true, fo&0x1fff == 0, fo&0x2000 != 0, uint32(binary.BigEndian.Uint16(inner[4:]))
		}
	}
	if !frag && (!v6 && next == 1 || v6 && next == 58) {
		return quotedVIP(inner, l4, v6)
	}
	if next != 6 && next != 17 {
		return VIPKey{}, fmt.Errorf("encapsulated proto %d (fragment %v)", next, frag)
	}
	if frag && !first {
		sport, dport, ok, err := fragPorts(lb, src, dst, id, next)
		if err != nil || !ok {
			return VIPKey{}, errors.Join(fmt.Errorf("encapsulated a later fragment (id %#x) whose first was not seen", id), err)
		}
		_ = sport
		return VIPKey{Addr: dst, Port: dport, Proto: next}, nil
	}
	if min := map[uint8]int{6: 20, 17: 8}[next]; len(l4) < min || next == 6 && (int(l4[12]>>4) < 5 || int(l4[12]>>4)*4 > len(l4)) {
		return VIPKey{}, fmt.Errorf("encapsulated proto %d with %d bytes of L4", next, len(l4))
	}
	if martian(src) {
		return VIPKey{}, fmt.Errorf("encapsulated a packet from %s", src)
	}
	sport, dport := binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	if frag && more {
		s, d, ok, err := fragPorts(lb, src, dst, id, next)
		if err != nil || !ok || s != sport || d != dport {
			return VIPKey{}, errors.Join(fmt.Errorf("a first fragment's ports %d→%d are not in the fragment table (%d→%d, %v)", sport, dport, s, d, ok), err)
		}
	}
	return VIPKey{Addr: dst, Port: dport, Proto: next}, nil
}

// quotedVIP: inner is an ICMP error (destination unreachable, time exceeded; ICMPv6 also
// packet too big) whose quote is a TCP or UDP packet from the error's destination; the VIP
// is that packet's source and port.
func quotedVIP(inner, icmp []byte, v6 bool) (VIPKey, error) {
	if !v6 {
		if len(inner) < 56 || icmp[0] != 3 && icmp[0] != 11 {
			return VIPKey{}, fmt.Errorf("encapsulated ICMP type %d, %d bytes", icmp[0], len(inner))
		}
		q := inner[28:]
		if q[0] != 0x45 || !bytes.Equal(q[12:16], inner[16:20]) || binary.BigEndian.Uint16(q[6:])&0x1fff != 0 || q[9] != 6 && q[9] != 17 {
			return VIPKey{}, fmt.Errorf("encapsulated an ICMP error quoting % x", q[:20])
		}
		return VIPKey{Addr: netip.AddrFrom4([4]byte(q[12:16])), Port: binary.BigEndian.Uint16(q[20:]), Proto: q[9]}, nil
	}
	if len(inner) < 96 || icmp[0] < 1 || icmp[0] > 3 {
		return VIPKey{}, fmt.Errorf("encapsulated ICMPv6 type %d, %d bytes", icmp[0], len(inner))
	}
	q := inner[48:]
	proto, l4 := q[6], q[40:]
	if proto == 44 { // a first fragment's fragment header, then its ports
		if len(l4) < 12 || binary.BigEndian.Uint16(l4[2:])&0xfff8 != 0 {
			return VIPKey{}, fmt.Errorf("encapsulated an ICMPv6 error quoting a fragment without ports")
		}
		proto, l4 = l4[0], l4[8:]
	}
	if q[0]>>4 != 6 || !bytes.Equal(q[8:24], inner[24:40]) || proto != 6 && proto != 17 {
		return VIPKey{}, fmt.Errorf("encapsulated an ICMPv6 error quoting % x", q[:40])
	}
	return VIPKey{Addr: netip.AddrFrom16([16]byte(q[8:24])), Port: binary.BigEndian.Uint16(l4), Proto: proto}, nil
}

// fragPorts reads the LB's fragment table: the ports a datagram's first fragment carried.
func fragPorts(lb *LB, src, dst netip.Addr, id uint32, proto uint8) (sport, dport uint16, ok bool, err error) {
	var p lbFragPorts
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		err = lb.objs.FragsV4.Lookup(lbFragKeyV4{Src: le(s[:]), Dst: le(d[:]), Id: htons(uint16(id)), Proto: proto}, &p)
	} else {
		k := lbFragKeyV6{Proto: proto}
		s, d := src.As16(), dst.As16()
		for i := range 4 {
			k.Src[i], k.Dst[i] = le(s[4*i:]), le(d[4*i:])
		}
		var idb [4]byte
		binary.BigEndian.PutUint32(idb[:], id)
		k.Id = le(idb[:])
		err = lb.objs.FragsV6.Lookup(k, &p)
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, 0, false, nil
	}
	return htons(p.Sport), htons(p.Dport), err == nil, err
}

// checkDecapEdge: decap took inner, a fragment (decap_fragment) or an ICMP error
// (decap_icmp_error), and made got of it. The destination is now to, this host's address;
// an ICMP error's quoted source too, and it was a VIP served here; a later fragment's first
// fragment was taken. Nothing else changed but checksums, each still right if it was, or
// (a fragment's L4 checksum, a quoted UDP checksum) moved exactly by the address it covers.
func checkDecapEdge(b *BackendHost, reason string, inner, got []byte, to netip.Addr, v6 bool) error {
	served := func(a []byte) bool {
		va, _ := netip.AddrFromSlice(a)
		return slices.ContainsFunc(testServedVIPs, func(k VIPKey) bool { return k.Addr == va })
	}
	// dst: the destination's offset; changes: the bytes that may differ besides it
	var dst int
	alen := 4
	if v6 {
		dst, alen = 24, 16
	} else {
		dst = 16
	}
	vipBytes, toBytes := inner[dst:dst+alen], to.AsSlice()
	if !served(vipBytes) || !bytes.Equal(got[dst:dst+alen], toBytes) {
		return fmt.Errorf("%s: destination %x → %x, want a served VIP → %s", reason, vipBytes, got[dst:dst+alen], to)
	}
	changes := map[int]bool{}
	for i := dst; i < dst+alen; i++ {
		changes[i] = true
	}
	if !v6 {
		changes[10], changes[11] = true, true
		if inetSum(inner[:20], 0) == 0xffff && inetSum(got[:20], 0) != 0xffff {
			return fmt.Errorf("%s: IPv4 header checksum broken", reason)
		}
	}
	// moved: a checksum at off covering the address changed exactly by it; a zero one (no
	// checksum: IPv4 UDP, or any quoted UDP one) stays zero when zeroStays
	moved := func(off int, zeroStays bool) bool {
		old, cur := binary.BigEndian.Uint16(inner[off:]), binary.BigEndian.Uint16(got[off:])
		if old == 0 && zeroStays {
			return cur == 0
		}
		return onesEqual(append([]byte{byte(old >> 8), byte(old)}, vipBytes...), append([]byte{byte(cur >> 8), byte(cur)}, toBytes...))
	}
	switch reason {
	case "decap_fragment":
		var proto uint8
		var l4off int
		var first bool
		var id uint32
		if v6 {
			if inner[6] != 44 || len(inner) < 48 {
				return fmt.Errorf("decap_fragment of next header %d", inner[6])
			}
			proto, l4off, first, id = inner[40], 48, binary.BigEndian.Uint16(inner[42:])&0xfff8 == 0, binary.BigEndian.Uint32(inner[44:])
		} else {
			fo := binary.BigEndian.Uint16(inner[6:])
			if fo&0x3fff == 0 {
				return fmt.Errorf("decap_fragment of a whole packet")
			}
			proto, l4off, first, id = inner[9], 20, fo&0x1fff == 0, uint32(binary.BigEndian.Uint16(inner[4:]))
		}
		if proto != 6 && proto != 17 {
			return fmt.Errorf("decap_fragment of proto %d", proto)
		}
		if first {
			coff := l4off + map[uint8]int{6: 16, 17: 6}[proto]
			if len(inner) < coff+2 || !moved(coff, proto == 17 && !v6) {
				return fmt.Errorf("first fragment's L4 checksum did not move with the destination")
			}
			changes[coff], changes[coff+1] = true, true
		} else if ok, err := backendFragSeen(b, inner, v6, id, proto); err != nil || !ok {
			return errors.Join(fmt.Errorf("took a later fragment whose first was not taken"), err)
		}
	case "decap_icmp_error":
		var q, ic int // offsets of the quote and of the ICMP header
		if v6 {
			q, ic = 48, 40
			if inner[6] != 58 || len(inner) < 96 || inner[40] < 1 || inner[40] > 3 {
				return fmt.Errorf("decap_icmp_error of % x", inner[:min(len(inner), 48)])
			}
		} else {
			q, ic = 28, 20
			if inner[9] != 1 || len(inner) < 56 || inner[20] != 3 && inner[20] != 11 {
				return fmt.Errorf("decap_icmp_error of % x", inner[:min(len(inner), 28)])
			}
		}
		qsrc := q + 12
		qproto := inner[q+9]
		hl := 20 // the quoted L4 header's offset in the quote
		if v6 {
			qsrc, qproto, hl = q+8, inner[q+6], 40
			if qproto == 44 && len(inner) >= q+52 { // a first fragment's header first
				qproto, hl = inner[q+40], 48
			}
		}
		if !bytes.Equal(inner[qsrc:qsrc+alen], vipBytes) || !bytes.Equal(got[qsrc:qsrc+alen], toBytes) || qproto != 6 && qproto != 17 {
			return fmt.Errorf("quoted source %x → %x (proto %d), want the VIP → %s", inner[qsrc:qsrc+alen], got[qsrc:qsrc+alen], qproto, to)
		}
		for i := qsrc; i < qsrc+alen; i++ {
			changes[i] = true
		}
		changes[ic+2], changes[ic+3] = true, true
		// the quoted L4 checksum, when quoted: UDP's (a zero one stays), TCP's past 16 bytes
		if qc := q + hl + map[uint8]int{6: 16, 17: 6}[qproto]; len(inner) >= qc+2 {
			if !moved(qc, qproto == 17) {
				return fmt.Errorf("quoted L4 checksum did not move with the quoted source")
			}
			changes[qc], changes[qc+1] = true, true
		}
		if !v6 {
			changes[q+10], changes[q+11] = true, true
			if inetSum(inner[q:q+20], 0) == 0xffff && inetSum(got[q:q+20], 0) != 0xffff {
				return fmt.Errorf("quoted IPv4 header checksum broken")
			}
			if inetSum(inner[ic:], 0) == 0xffff && inetSum(got[ic:], 0) != 0xffff {
				return fmt.Errorf("ICMP checksum broken")
			}
		} else if inetSum(inner[ic:], pseudoSum(inner[8:24], inner[24:40], 58, len(inner)-ic)) == 0xffff &&
			inetSum(got[ic:], pseudoSum(got[8:24], got[24:40], 58, len(got)-ic)) != 0xffff {
			return fmt.Errorf("ICMPv6 checksum broken")
		}
	default:
		return fmt.Errorf("reason %s", reason)
	}
	for i := range inner {
		if inner[i] != got[i] && !changes[i] {
			return fmt.Errorf("%s: byte %d of the inner packet changed", reason, i)
		}
	}
	return nil
}

// onesEqual: do a and b (16-bit words) have the same ones' complement sum, where 0 and
// 0xffff are the same number?
func onesEqual(a, b []byte) bool {
	sum := func(x []byte) uint32 { return uint32(inetSum(x, 0)) % 0xffff }
	return sum(a) == sum(b)
}

// backendFragSeen: did the backend take the first fragment of the datagram inner is one of?
func backendFragSeen(b *BackendHost, inner []byte, v6 bool, id uint32, proto uint8) (bool, error) {
	var v uint32
	var err error
	if v6 {
		k := backendhostFragKeyV6{Proto: proto}
		for i := range 4 {
			k.Src[i], k.Dst[i] = le(inner[8+4*i:]), le(inner[24+4*i:])
		}
		k.Id = le(inner[44:48])
		err = b.objs.DsrFragsV6.Lookup(k, &v)
	} else {
		err = b.objs.DsrFragsV4.Lookup(backendhostFragKeyV4{Src: le(inner[12:16]), Dst: le(inner[16:20]), Id: htons(uint16(id)), Proto: proto}, &v)
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return false, nil
	}
	return err == nil, err
}

// edgeLBSeeds: ICMP errors about VIP flows and the fragments of datagrams to VIPs, each
// datagram's first fragment before its later ones.
func edgeLBSeeds(tb testing.TB) [][]byte {
	web := Flow{Src: client, Dst: vip, SrcPort: 40100, DstPort: 80, Proto: 6}
	dns := Flow{Src: client, Dst: vip, SrcPort: 40101, DstPort: 53, Proto: 17}
	web6 := Flow{Src: client6, Dst: vip6, SrcPort: 40102, DstPort: 80, Proto: 6}
	seeds := [][]byte{
		icmpError(tb, router, reply(tb, web, 1460), 28, 3, 4, 1280, 0),
		icmpError(tb, router, reply(tb, web, 1460), 548, 3, 4, 1280, 0),
		icmpError(tb, client, reply(tb, dns, 100), 128, 3, 3, 0, 0),
		icmpError(tb, router6, reply(tb, web6, 1440), 1232, 2, 0, 1280, 0),
		icmpError(tb, router6, reply(tb, web6, 0), 48, 3, 0, 0, 7),
		icmpError(tb, router6, fragments(reply(tb, web6, 3000), 0x40000010, 1448)[0], 1232, 2, 0, 1280, 0),
	}
	for _, f := range fragments(udpDatagram(tb, dns.Src, dns.Dst, dns.SrcPort, dns.DstPort, 3000), 0x4001, 1480) {
		seeds = append(seeds, frameOf(tb, f))
	}
	for _, f := range fragments(udpDatagram(tb, client6, vip6, 40103, 80, 3000), 0x40000002, 1448) {
		seeds = append(seeds, frameOf(tb, f))
	}
	return seeds
}

// edgeBackendSeeds: the same, tunnelled to a backend as the LB sends them.
func edgeBackendSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	web := Flow{Src: client, Dst: vip, SrcPort: 40100, DstPort: 80, Proto: 6}
	dns := Flow{Src: client, Dst: vip, SrcPort: 40101, DstPort: 53, Proto: 17}
	web6 := Flow{Src: client6, Dst: vip6, SrcPort: 40102, DstPort: 80, Proto: 6}
	for _, gue := range []bool{false, true} {
		seeds = append(seeds,
			encapsulated(tb, beAddrs[0], l3(icmpError(tb, router, reply(tb, web, 1460), 548, 3, 4, 1280, 0)), true, gue),
			encapsulated(tb, beAddrs[0], l3(icmpError(tb, client, reply(tb, dns, 100), 128, 3, 3, 0, 0)), true, gue),
			encapsulated(tb, beAddrs6[0], l3(icmpError(tb, router, reply(tb, web, 1460), 28, 3, 4, 1280, 0)), true, gue),
			encapsulated(tb, beAddrs6[0], l3(icmpError(tb, router6, reply(tb, web6, 1440), 1232, 2, 0, 1280, 0)), false, gue),
			encapsulated(tb, beAddrs6[0], l3(icmpError(tb, router6, fragments(reply(tb, web6, 3000), 0x40000011, 1448)[0], 1232, 2, 0, 1280, 0)), false, gue))
	}
	for _, f := range fragments(udpDatagram(tb, client, vip, 40104, 53, 3000), 0x4003, 1480) {
		seeds = append(seeds, encapsulated(tb, beAddrs[0], f, true, false))
	}
	for _, f := range fragments(udpDatagram(tb, client6, vip6, 40105, 53, 3000), 0x40000004, 1448) {
		seeds = append(seeds, encapsulated(tb, beAddrs6[0], f, false, true))
	}
	// replies to those datagrams, in fragments (the first fragments' decap recorded the flows)
	for _, f := range fragments(udpDatagram(tb, beAddrs[0], client, 53, 40104, 3000), 0x4005, 1480) {
		seeds = append(seeds, frameOf(tb, f))
	}
	for _, f := range fragments(udpDatagram(tb, beAddrs6[0], client6, 53, 40105, 3000), 0x40000006, 1448) {
		seeds = append(seeds, frameOf(tb, f))
	}
	return seeds
}

// fragmentOf: is the IP packet p a fragment (IPv4 MF or offset; IPv6 with a fragment header
// first)?
func fragmentOf(p []byte, v6 bool) bool {
	if v6 {
		return p[6] == 44
	}
	return binary.BigEndian.Uint16(p[6:])&0x3fff != 0
}

// checkEgressFrag: tc_egress rewrote a fragment of a reply, pi, into po: its source is a
// served VIP; a first fragment's port and L4 checksum may change too (the checksum exactly
// by what changed), a later fragment's nothing else (but the IPv4 header checksum), and its
// first fragment left here (the reply fragment table holds its datagram).
func checkEgressFrag(b *BackendHost, pi, po []byte, v6 bool) error {
	srcOff, srcLen, l4Off, proto := 12, 4, 20, pi[9]
	var first bool
	var id uint32
	if v6 {
		if len(pi) < 48 {
			return fmt.Errorf("rewrote an IPv6 fragment header cut short")
		}
		srcOff, srcLen, l4Off, proto = 8, 16, 48, pi[40]
		first, id = binary.BigEndian.Uint16(pi[42:])&0xfff8 == 0, binary.BigEndian.Uint32(pi[44:])
	} else {
		first, id = binary.BigEndian.Uint16(pi[6:])&0x1fff == 0, uint32(binary.BigEndian.Uint16(pi[4:]))
	}
	newSrc, _ := netip.AddrFromSlice(po[srcOff : srcOff+srcLen])
	if !slices.ContainsFunc(testServedVIPs, func(k VIPKey) bool { return k.Addr == newSrc }) {
		return fmt.Errorf("fragment's source rewritten to %s, no VIP", newSrc)
	}
	allowed := map[int]bool{}
	for i := srcOff; i < srcOff+srcLen; i++ {
		allowed[i] = true
	}
	if !v6 {
		allowed[10], allowed[11] = true, true
		if inetSum(pi[:20], 0) == 0xffff && inetSum(po[:20], 0) != 0xffff {
			return fmt.Errorf("IPv4 checksum broken")
		}
	}
	if first {
		coff := l4Off + map[uint8]int{6: 16, 17: 6}[proto]
		if coff == l4Off || len(pi) < coff+2 {
			return fmt.Errorf("rewrote a first fragment of proto %d", proto)
		}
		allowed[l4Off], allowed[l4Off+1], allowed[coff], allowed[coff+1] = true, true, true, true
		oldC, newC := pi[coff:coff+2], po[coff:coff+2]
		zero := !v6 && proto == 17 && oldC[0] == 0 && oldC[1] == 0
		if zero && (newC[0] != 0 || newC[1] != 0) ||
			!zero && !onesEqual(slices.Concat(oldC, pi[srcOff:srcOff+srcLen], pi[l4Off:l4Off+2]), slices.Concat(newC, po[srcOff:srcOff+srcLen], po[l4Off:l4Off+2])) {
			return fmt.Errorf("first fragment's L4 checksum did not move with its source and port")
		}
	} else if ok, err := replyFragSeen(b, pi, v6, id, proto); err != nil || !ok {
		return errors.Join(fmt.Errorf("rewrote a later fragment whose first did not leave here"), err)
	}
	for i := range pi {
		if pi[i] != po[i] && !allowed[i] {
			return fmt.Errorf("byte %d of the fragment changed", i)
		}
	}
	return nil
}

// replyFragSeen: does the backend's reply fragment table hold the datagram p is part of?
func replyFragSeen(b *BackendHost, p []byte, v6 bool, id uint32, proto uint8) (bool, error) {
	var v backendhostReplyVal
	var err error
	if v6 {
		k := backendhostFragKeyV6{Proto: proto}
		for i := range 4 {
			k.Src[i], k.Dst[i] = le(p[8+4*i:]), le(p[24+4*i:])
		}
		k.Id = le(p[44:48])
		err = b.objs.DsrReplyFragsV6.Lookup(k, &v)
	} else {
		err = b.objs.DsrReplyFragsV4.Lookup(backendhostFragKeyV4{Src: le(p[12:16]), Dst: le(p[16:20]), Id: htons(uint16(id)), Proto: proto}, &v)
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return false, nil
	}
	return err == nil, err
}
