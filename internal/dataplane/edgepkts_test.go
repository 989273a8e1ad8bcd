package dataplane

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The packets of a VIP flow that carry no ports of their own (bpf/lb_edge.h): ICMP errors
// about the VIP's packets, which go to the backend of the flow they quote, and fragments,
// which follow their first fragment's flow.

var router = netip.MustParseAddr("198.18.0.254") // a router on the reply path
var router6 = netip.MustParseAddr("2001:db8::fe")

// reply is the L3 packet a backend sends for flow f (from the client to the VIP) with n
// bytes of payload, as it leaves with the VIP as its source (direct server return).
func reply(t testing.TB, f Flow, n int) []byte {
	t.Helper()
	p := l4{proto: layers.IPProtocol(f.Proto), sport: f.DstPort, dport: f.SrcPort, ack: f.Proto == 6, payload: make([]byte, n),
		flags: layers.IPv4DontFragment}
	return l3(packet(t, f.Dst, f.Src, p))
}

// icmpError is the frame a router sends to the VIP (src → quoted's source) about the packet
// quoted (an L3 packet, of which the first n bytes are quoted): ICMP type/code with rest (the
// 4 bytes after the checksum: a next-hop MTU) from an IPv4 router, ICMPv6 from an IPv6 one.
func icmpError(t testing.TB, src netip.Addr, quoted []byte, n int, typ, code uint8, rest uint32, vlan uint16) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv4}
	ls := []gopacket.SerializableLayer{eth}
	etype := layers.EthernetTypeIPv4
	if src.Is6() {
		etype = layers.EthernetTypeIPv6
	}
	eth.EthernetType = etype
	if vlan != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: vlan, Type: etype})
	}
	q := quoted[:min(n, len(quoted))]
	if src.Is4() {
		dst := netip.AddrFrom4([4]byte(quoted[12:16]))
		return serialize(t, append(ls,
			&layers.IPv4{Version: 4, TTL: 64, TOS: 0xc0, Id: 0x2a2a, Protocol: layers.IPProtocolICMPv4, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()},
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: uint16(rest >> 16), Seq: uint16(rest)},
			gopacket.Payload(q))...)
	}
	dst := netip.AddrFrom16([16]byte(quoted[8:24]))
	ip := &layers.IPv6{Version: 6, HopLimit: 64, TrafficClass: 0xc0, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	_ = ic.SetNetworkLayerForChecksum(ip)
	return serialize(t, append(ls, ip, ic, gopacket.Payload(append(binary.BigEndian.AppendUint32(nil, rest), q...)))...)
}

// udpDatagram is a UDP datagram (L3, whole) from src to dst with n bytes of payload, each
// byte its offset: a later fragment's bytes say where they belong.
func udpDatagram(t testing.TB, src, dst netip.Addr, sport, dport uint16, n int) []byte {
	t.Helper()
	p := udp(sport, dport)
	p.payload = make([]byte, n)
	for i := range p.payload {
		p.payload[i] = byte(i)
	}
	return l3(packet(t, src, dst, p))
}

// fragments cuts pkt (an L3 packet: IPv4 without options, or IPv6 with no extension
// header) into fragments of at most size bytes of payload each (a multiple of 8), as a
// sender does: IPv4 with the identification id, IPv6 with a fragment header of id.
func fragments(pkt []byte, id uint32, size int) [][]byte {
	var out [][]byte
	if pkt[0]>>4 == 4 {
		payload := pkt[20:]
		for off := 0; off < len(payload); off += size {
			end := min(off+size, len(payload))
			f := append(append([]byte{}, pkt[:20]...), payload[off:end]...)
			binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
			binary.BigEndian.PutUint16(f[4:], uint16(id))
			fo := uint16(off / 8)
			if end < len(payload) {
				fo |= 0x2000
			}
			binary.BigEndian.PutUint16(f[6:], fo)
			f[10], f[11] = 0, 0
			binary.BigEndian.PutUint16(f[10:], ipv4HeaderSum(f[:20]))
			out = append(out, f)
		}
		return out
	}
	payload := pkt[40:]
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		fo := uint16(off)
		if end < len(payload) {
			fo |= 1
		}
		fh := []byte{pkt[6], 0, byte(fo >> 8), byte(fo), byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
		f := append(append(append([]byte{}, pkt[:40]...), fh...), payload[off:end]...)
		f[6] = 44
		binary.BigEndian.PutUint16(f[4:], uint16(8+end-off))
		out = append(out, f)
	}
	return out
}

// frameOf puts an L3 packet in an Ethernet frame from the client to the LB.
func frameOf(t testing.TB, pkt []byte) []byte {
	t.Helper()
	etype := layers.EthernetTypeIPv4
	if pkt[0]>>4 == 6 {
		etype = layers.EthernetTypeIPv6
	}
	return serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: etype}, gopacket.Payload(pkt))
}

// flowHit reports whether the LB's flow table holds f.
func flowHit(t *testing.T, lb *LB, f Flow) bool {
	t.Helper()
	var v lbFlowVal
	var err error
	if f.Src.Is4() {
		s, d := f.Src.As4(), f.Dst.As4()
		err = lb.objs.FlowsV4.Lookup(lbFlowKeyV4{Src: le(s[:]), Dst: le(d[:]), Sport: htons(f.SrcPort), Dport: htons(f.DstPort), Proto: f.Proto}, &v)
	} else {
		k := lbFlowKeyV6{Sport: htons(f.SrcPort), Dport: htons(f.DstPort), Proto: f.Proto}
		s, d := f.Src.As16(), f.Dst.As16()
		for i := range 4 {
			k.Src[i], k.Dst[i] = le(s[4*i:]), le(d[4*i:])
		}
		err = lb.objs.FlowsV6.Lookup(k, &v)
	}
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestICMPErrorFixtures(t *testing.T) {
	lb, vips := fixtureLB(t)
	var cases []fixture
	// sent: an error about flow f of VIP key goes where the ring puts f (no flow recorded
	// here), encapsulated as f's packets are: the same flow hash, the error's own TOS
	sent := func(name string, key VIPKey, f Flow, in []byte, vlan uint16) {
		cases = append(cases, fixture{name: name, in: in, wantAction: xdpTX, wantReason: "tx",
			want: encapExpected(t, owner(vips[key], f), l3(in), f.Src.Is4(), 0xc0, vlan, f.Hash(testSeed), vips[key].GUE)})
	}
	hostsWith := func(name string, in []byte, reason string) {
		cases = append(cases, fixture{name: name, in: in, wantAction: xdpPass, want: in, wantReason: reason})
	}
	drop := func(name string, in []byte, reason string) {
		cases = append(cases, fixture{name: name, in: in, wantAction: xdpDrop, wantReason: reason})
	}

	web := Flow{Src: client, Dst: vip, SrcPort: 42000, DstPort: 80, Proto: 6}
	dns := Flow{Src: client, Dst: vip, SrcPort: 42001, DstPort: 53, Proto: 17}
	web6 := Flow{Src: client6, Dst: vip6, SrcPort: 42002, DstPort: 80, Proto: 6}
	const fragNeeded, portUnreach, ttlExceeded = 4, 3, 0
	sent("fragmentation needed for a tcp flow: to its backend", webKey, web,
		icmpError(t, router, reply(t, web, 1460), 28, 3, fragNeeded, 1280, 0), 0)
	sent("fragmentation needed quoting 548 bytes, as linux does", webKey, web,
		icmpError(t, router, reply(t, web, 1460), 548, 3, fragNeeded, 1280, 0), 0)
	sent("port unreachable for a udp flow", dnsKey, dns,
		icmpError(t, client, reply(t, dns, 100), 128, 3, portUnreach, 0, 0), 0)
	sent("time exceeded for a tcp flow", webKey, web,
		icmpError(t, router, reply(t, web, 0), 28, 11, ttlExceeded, 0, 0), 0)
	any := Flow{Src: client, Dst: anyKey.Addr, SrcPort: 42003, DstPort: 8443, Proto: 6}
	sent("fragmentation needed for a port-wildcard vip", anyKey, any,
		icmpError(t, router, reply(t, any, 1460), 28, 3, fragNeeded, 1400, 0), 0)
	w46 := Flow{Src: client, Dst: web46Key.Addr, SrcPort: 42004, DstPort: 80, Proto: 6}
	sent("fragmentation needed for an ipv4 vip with ipv6 backends (4in6)", web46Key, w46,
		icmpError(t, router, reply(t, w46, 1460), 28, 3, fragNeeded, 1280, 0), 0)
	g := Flow{Src: client, Dst: gueKey.Addr, SrcPort: 42005, DstPort: 80, Proto: 6}
	sent("fragmentation needed for a gue vip: the flow's udp source port", gueKey, g,
		icmpError(t, router, reply(t, g, 1460), 28, 3, fragNeeded, 1280, 0), 0)
	sent("fragmentation needed, vlan tagged: the tag kept", webKey, web,
		icmpError(t, router, reply(t, web, 1460), 28, 3, fragNeeded, 1280, 7), 7)
	sent("icmpv6 packet too big for a tcp flow", web6Key, web6,
		icmpError(t, router6, reply(t, web6, 1440), 1232, 2, 0, 1280, 0), 0)
	sent("icmpv6 destination unreachable for a tcp flow", web6Key, web6,
		icmpError(t, router6, reply(t, web6, 100), 48, 1, 4, 0, 0), 0)
	sent("icmpv6 time exceeded for a tcp flow", web6Key, web6,
		icmpError(t, router6, reply(t, web6, 0), 48, 3, 0, 0, 0), 0)
	// the backend's kernel fragments what it sends larger than its path MTU; IPv6 routers
	// answer each fragment with packet too big, and the first one's quote has the ports
	bigReply6 := fragments(reply(t, web6, 3000), 0x7000aaaa, 1448)
	sent("icmpv6 packet too big about the first fragment of a reply", web6Key, web6,
		icmpError(t, router6, bigReply6[0], 1232, 2, 0, 1280, 0), 0)
	g6 := Flow{Src: client6, Dst: gue6Key.Addr, SrcPort: 42006, DstPort: 80, Proto: 6}
	sent("icmpv6 packet too big for a gue vip", gue6Key, g6,
		icmpError(t, router6, reply(t, g6, 1440), 48, 2, 0, 1280, 0), 0)

	// what is no error about a VIP's flow stays the host's
	hostsWith("a redirect to a vip address", icmpError(t, router, reply(t, web, 0), 28, 5, 1, 0, 0), "pass")
	hostsWith("icmpv6 parameter problem to a vip address", icmpError(t, router6, reply(t, web6, 0), 48, 4, 0, 0, 0), "pass")
	other := reply(t, web, 0)
	copy(other[12:16], beAddrs[0].AsSlice()) // a packet from a backend's own address, not the vip
	hostsWith("an error about a packet from another address", icmpError(t, router, other, 28, 3, fragNeeded, 1280, 0), "pass")
	hostsWith("an error about a port that is no vip", icmpError(t, router, reply(t, Flow{Src: client, Dst: vip, SrcPort: 42007, DstPort: 81, Proto: 6}, 0), 28, 3, fragNeeded, 1280, 0), "pass")
	echoReply := l3(echo(t, lbMAC, clientMAC, vip, client, true, 64))
	hostsWith("an error about an echo reply from the vip", icmpError(t, router, echoReply, 28, 3, portUnreach, 0, 0), "pass")
	opts := reply(t, web, 0)
	opts[0] = 0x46 // claims 4 bytes of options: the quoted ports are not where a 20-byte header puts them
	hostsWith("an error quoting a header with options", icmpError(t, router, opts, 28, 3, fragNeeded, 1280, 0), "pass")
	later := reply(t, web, 0)
	later[6], later[7] = 0x00, 0x10 // fragment offset 128: no ports in it
	hostsWith("an error quoting a later fragment", icmpError(t, router, later, 28, 11, 1, 0, 0), "pass")
	hostsWith("an error cut inside the quoted ports", trimmed(icmpError(t, router, reply(t, web, 0), 22, 3, fragNeeded, 1280, 0)), "pass")
	hostsWith("an error to an address that is no vip", icmpError(t, router, func() []byte {
		p := reply(t, web, 0)
		copy(p[12:16], netip.MustParseAddr("198.18.0.99").AsSlice())
		return p
	}(), 28, 3, fragNeeded, 1280, 0), "pass")
	hostsWith("icmpv6 packet too big about a later fragment: no ports to follow", icmpError(t, router6, bigReply6[1], 1232, 2, 0, 1280, 0), "pass")
	other6 := reply(t, web6, 0)
	copy(other6[8:24], beAddrs6[0].AsSlice())
	hostsWith("an icmpv6 error about a packet from another address", icmpError(t, router6, other6, 48, 2, 0, 1280, 0), "pass")

	// an error about a VIP's flow that cannot be sent whole is dropped, never answered
	lying := icmpError(t, router, reply(t, web, 0), 28, 3, fragNeeded, 1280, 0)
	lying[14+2], lying[14+3] = 0x02, 0x00 // total length 512 in a 70-byte frame
	drop("an error whose total length is beyond the frame", lying, "drop_malformed")
	drop("an icmpv6 error too big for the largest outer header", icmpError(t, router6, reply(t, web6, 1500), 1600-48-48+1, 2, 0, 1280, 0), "drop_too_big")

	runFixtures(t, lb, cases)

	// none of them entered the flow table, and each counted as an icmp_error event
	for _, f := range []Flow{web, dns, web6, any, w46, g, g6} {
		if flowHit(t, lb, f) {
			t.Errorf("an icmp error recorded flow %+v", f)
		}
	}
	st, err := lb.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Events["icmp_error"]; got != 13 {
		t.Errorf("icmp_error events %d, want 13, one per error sent", got)
	}
}

// An ICMP error follows the flow table, where the flow's packets go, not the ring, which
// may name another backend by now; with no backend anywhere it is dropped.
func TestICMPErrorFollowsTheFlowTable(t *testing.T) {
	lb := mustLoadLB(t)
	bes := testBackends(beAddrs)
	v := VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)}
	v6 := VIP{Key: web6Key, Backends: testBackends(beAddrs6), Ring: roundRobinRing(ringLen, 3)}
	mustApply(t, lb, v, v6)
	f := Flow{Src: client, Dst: vip, SrcPort: 43100, DstPort: 80, Proto: 6}
	f6 := Flow{Src: client6, Dst: vip6, SrcPort: 43101, DstPort: 80, Proto: 6}
	first := owner(v, f)
	first6 := owner(v6, f6)
	for _, fl := range []Flow{f, f6} {
		if ret, _ := run(t, lb.objs.XdpLb, packet(t, fl.Src, fl.Dst, tcp(fl.SrcPort, fl.DstPort, false, true))); ret != xdpTX {
			t.Fatalf("ack of %+v: verdict %d", fl, ret)
		}
	}
	// every slot of the new rings names another backend
	moved := func(v VIP, be Backend) VIP {
		for i, b := range v.Backends {
			if b.Addr != be.Addr {
				r := make([]uint32, ringLen)
				for j := range r {
					r[j] = uint32(i)
				}
				v.Ring = r
				return v
			}
		}
		t.Fatal("one backend")
		return v
	}
	mustApply(t, lb, moved(v, first), moved(v6, first6))
	cases := []fixture{
		{name: "fragmentation needed: to the backend of the flow table", wantAction: xdpTX, wantReason: "tx",
			in:   icmpError(t, router, reply(t, f, 1460), 28, 3, 4, 1280, 0),
			want: encapExpected(t, first, l3(icmpError(t, router, reply(t, f, 1460), 28, 3, 4, 1280, 0)), true, 0xc0, 0, f.Hash(testSeed), false)},
		{name: "packet too big: to the backend of the flow table", wantAction: xdpTX, wantReason: "tx",
			in:   icmpError(t, router6, reply(t, f6, 1440), 48, 2, 0, 1280, 0),
			want: encapExpected(t, first6, l3(icmpError(t, router6, reply(t, f6, 1440), 48, 2, 0, 1280, 0)), false, 0xc0, 0, f6.Hash(testSeed), false)},
	}
	runFixtures(t, lb, cases)

	mustApply(t, lb, VIP{Key: webKey})
	other := Flow{Src: client, Dst: vip, SrcPort: 43102, DstPort: 80, Proto: 6}
	runFixtures(t, lb, []fixture{{name: "an error for a vip without backends", wantAction: xdpDrop, wantReason: "drop_no_backend",
		in: icmpError(t, router, reply(t, other, 1460), 28, 3, 4, 1280, 0)}})
}

func TestFragmentFixtures(t *testing.T) {
	lb, vips := fixtureLB(t)
	var cases []fixture
	// sent: fragment frag of flow f to VIP key goes where the ring put f, with f's hash
	sent := func(name string, key VIPKey, f Flow, frag []byte) {
		in := frameOf(t, frag)
		cases = append(cases, fixture{name: name, in: in, wantAction: xdpTX, wantReason: "tx",
			want: encapExpected(t, owner(vips[key], f), frag, f.Src.Is4(), 0, 0, f.Hash(testSeed), vips[key].GUE)})
	}
	verdict := func(name string, frag []byte, action uint32, reason string) {
		in := frameOf(t, frag)
		var want []byte
		if action == xdpPass {
			want = in
		}
		cases = append(cases, fixture{name: name, in: in, wantAction: action, want: want, wantReason: reason})
	}

	// a 4,000-byte datagram in three fragments, and the same id's fragments from elsewhere
	dns := Flow{Src: client, Dst: vip, SrcPort: 44000, DstPort: 53, Proto: 17}
	d := fragments(udpDatagram(t, dns.Src, dns.Dst, dns.SrcPort, dns.DstPort, 4000), 0x1001, 1480)
	if len(d) != 3 {
		t.Fatalf("%d fragments", len(d))
	}
	sent("udp first fragment: balanced by its ports", dnsKey, dns, d[0])
	sent("its second fragment: the same backend", dnsKey, dns, d[1])
	sent("its last fragment: the same backend", dnsKey, dns, d[2])
	sent("its second fragment again (a duplicate): the same backend", dnsKey, dns, d[1])
	orphan := fragments(udpDatagram(t, dns.Src, dns.Dst, dns.SrcPort, dns.DstPort, 4000), 0x1002, 1480)
	verdict("a later fragment whose first was not seen", orphan[1], xdpDrop, "drop_fragment_orphan")
	stranger := fragments(udpDatagram(t, netip.MustParseAddr("198.18.1.7"), dns.Dst, dns.SrcPort, dns.DstPort, 4000), 0x1001, 1480)
	verdict("a later fragment of the same id from another source", stranger[1], xdpDrop, "drop_fragment_orphan")
	nonVIP := fragments(udpDatagram(t, client, netip.MustParseAddr("198.18.0.99"), 44001, 53, 4000), 0x1003, 1480)
	verdict("a first fragment to an address that is no vip: the host's", nonVIP[0], xdpPass, "pass_fragment")
	verdict("a later fragment to an address that is no vip: the host's", nonVIP[1], xdpPass, "pass_fragment")
	ping := fragments(l3(echo(t, clientMAC, lbMAC, client, vip, false, 64)), 0x1004, 16)
	verdict("a fragment of an echo request to a vip: the host's", ping[0], xdpPass, "pass_fragment")
	wrongPort := fragments(udpDatagram(t, client, vip, 44002, 5353, 3000), 0x1005, 1480)
	verdict("a first fragment to a vip address, a port that is no vip: the host's", wrongPort[0], xdpPass, "pass")
	verdict("its later fragment follows it to the host", wrongPort[1], xdpPass, "pass")
	tiny := fragments(l3(packet(t, client, vip, tcp(44003, 80, false, true))), 0x1006, 8)
	verdict("a first fragment cut inside its tcp header (RFC 1858)", tiny[0], xdpDrop, "drop_malformed")
	lying := append([]byte{}, d[1]...)
	binary.BigEndian.PutUint16(lying[2:], 1600)
	lying[10], lying[11] = 0, 0
	binary.BigEndian.PutUint16(lying[10:], ipv4HeaderSum(lying[:20]))
	verdict("a later fragment whose total length is beyond the frame", lying, xdpDrop, "drop_malformed")
	gue := Flow{Src: client, Dst: gueKey.Addr, SrcPort: 44004, DstPort: 80, Proto: 6}
	gd := fragments(l3(packet(t, gue.Src, gue.Dst, l4{proto: layers.IPProtocolTCP, sport: gue.SrcPort, dport: 80, ack: true, payload: make([]byte, 2000)})), 0x1007, 1480)
	sent("a tcp first fragment to a gue vip: the flow's udp source port", gueKey, gue, gd[0])
	sent("its last fragment: the same backend and source port", gueKey, gue, gd[1])

	web6 := Flow{Src: client6, Dst: vip6, SrcPort: 44005, DstPort: 80, Proto: 6}
	d6 := fragments(l3(packet(t, web6.Src, web6.Dst, l4{proto: layers.IPProtocolTCP, sport: web6.SrcPort, dport: 80, ack: true, payload: make([]byte, 3000)})), 0x70000001, 1448)
	sent("ipv6 first fragment: balanced by its ports", web6Key, web6, d6[0])
	sent("its second fragment: the same backend and flow label", web6Key, web6, d6[1])
	sent("its last fragment", web6Key, web6, d6[2])
	orphan6 := fragments(l3(packet(t, web6.Src, web6.Dst, l4{proto: layers.IPProtocolTCP, sport: web6.SrcPort, dport: 80, ack: true, payload: make([]byte, 3000)})), 0x70000002, 1448)
	verdict("an ipv6 later fragment whose first was not seen", orphan6[1], xdpDrop, "drop_fragment_orphan")
	atomic := fragments(l3(packet(t, client6, vip6, tcp(44006, 80, false, true))), 0x70000003, 1448)
	if len(atomic) != 1 {
		t.Fatal("atomic fragment")
	}
	sent("an ipv6 atomic fragment (offset 0, no more): balanced as a whole packet", web6Key, Flow{Src: client6, Dst: vip6, SrcPort: 44006, DstPort: 80, Proto: 6}, atomic[0])
	echo6 := fragments(l3(echo(t, clientMAC, lbMAC, client6, vip6, false, 64)), 0x70000004, 16)
	verdict("a fragment of an icmpv6 echo to a vip: the host's", echo6[0], xdpPass, "pass_fragment")
	cut6 := append([]byte{}, d6[0][:40+4]...)
	binary.BigEndian.PutUint16(cut6[4:], 4)
	verdict("an ipv6 fragment header cut short", cut6, xdpDrop, "drop_malformed")

	runFixtures(t, lb, cases)

	// the atomic fragment left nothing to follow: no entry under its id
	if _, _, ok, err := fragPorts(lb, client6, vip6, 0x70000003, 6); err != nil || ok {
		t.Errorf("atomic fragment remembered: %v %v", ok, err)
	}
	st, err := lb.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// every fragment sent the flow path: 4 + 2 (host) + 2 (gue) + 4 (ipv6)
	if got := st.Events["fragment"]; got != 12 {
		t.Errorf("fragment events %d, want 12", got)
	}
}

// A later fragment follows its first fragment's backend when the ring changes in between.
func TestFragmentsFollowTheirFirstWhenTheRingChanges(t *testing.T) {
	lb := mustLoadLB(t)
	bes := testBackends(beAddrs)
	v := VIP{Key: dnsKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)}
	mustApply(t, lb, v)
	f := Flow{Src: client, Dst: vip, SrcPort: 45000, DstPort: 53, Proto: 17}
	d := fragments(udpDatagram(t, f.Src, f.Dst, f.SrcPort, f.DstPort, 4000), 0x2001, 1480)
	first := owner(v, f)
	runFixtures(t, lb, []fixture{{name: "first fragment", in: frameOf(t, d[0]), wantAction: xdpTX, wantReason: "tx",
		want: encapExpected(t, first, d[0], true, 0, 0, f.Hash(testSeed), false)}})
	r := make([]uint32, ringLen)
	for i := range r {
		r[i] = uint32((v.Ring[f.Slot(testSeed, ringLen)] + 1) % 3)
	}
	mustApply(t, lb, VIP{Key: dnsKey, Backends: bes, Ring: r})
	runFixtures(t, lb, []fixture{
		{name: "second fragment, after the ring moved the slot", in: frameOf(t, d[1]), wantAction: xdpTX, wantReason: "tx",
			want: encapExpected(t, first, d[1], true, 0, 0, f.Hash(testSeed), false)},
		{name: "last fragment", in: frameOf(t, d[2]), wantAction: xdpTX, wantReason: "tx",
			want: encapExpected(t, first, d[2], true, 0, 0, f.Hash(testSeed), false)},
	})
}

// An ICMP error about a flow another LB node shared (flow sync) goes where that flow's
// packets go here: the backend the adopted flow names, not the ring's.
func TestICMPErrorFollowsAnAdoptedFlow(t *testing.T) {
	lb := mustLoadLB(t)
	a := mustAdopted(t, lb)
	bes := testBackends(beAddrs)
	v := VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)}
	mustApply(t, lb, v)
	var f Flow
	for _, c := range flowsTo(vip, client, 52000, 40) {
		if owner(v, c).Addr != beAddrs[2] {
			f = c
			break
		}
	}
	adopt(t, a, SharedFlow{f, webKey, beAddrs[2]})
	in := icmpError(t, router, reply(t, f, 1460), 28, 3, 4, 1280, 0)
	runFixtures(t, lb, []fixture{{name: "fragmentation needed about an adopted flow: to its backend", in: in,
		wantAction: xdpTX, wantReason: "tx", want: encapExpected(t, bes[2], l3(in), true, 0xc0, 0, f.Hash(testSeed), false)}})
}
