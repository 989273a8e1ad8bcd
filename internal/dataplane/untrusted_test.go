package dataplane

import (
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The inputs a fuzzing pass over xdp_lb found forwarded or answered without being checked
// (issue: "the data path sends on what it never checked"), each with the verdict and bytes
// it must now give. The hex strings are the fuzzer's own frames.

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// echoFrame is an ICMP (v4) or ICMPv6 echo request or reply with the given addresses and
// no payload, IPv4 id 0x1234, as the fuzzer's frames are.
func echoFrame(tb testing.TB, srcMAC, dstMAC []byte, src, dst netip.Addr, reply bool, ttl uint8) []byte {
	tb.Helper()
	if src.Is4() {
		typ := uint8(layers.ICMPv4TypeEchoRequest)
		if reply {
			typ = layers.ICMPv4TypeEchoReply
		}
		return serialize(tb, &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4},
			&layers.IPv4{Version: 4, TTL: ttl, Id: 0x1234, Protocol: layers.IPProtocolICMPv4, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()},
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: 7, Seq: 3})
	}
	typ := uint8(layers.ICMPv6TypeEchoRequest)
	if reply {
		typ = layers.ICMPv6TypeEchoReply
	}
	ip := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	_ = ic.SetNetworkLayerForChecksum(ip)
	return serialize(tb, &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv6},
		ip, ic, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 3})
}

func TestUntrustedInputsFixtures(t *testing.T) {
	lb, vips := fixtureLB(t)
	var cases []fixture
	drop := func(name string, in []byte, reason string) {
		cases = append(cases, fixture{name: name, in: in, wantAction: xdpDrop, wantReason: reason})
	}
	tx := func(name string, in, want []byte, reason string) {
		cases = append(cases, fixture{name: name, in: in, wantAction: xdpTX, want: want, wantReason: reason})
	}

	// 1. the version nibble must agree with the ethertype: a GUE backend takes the family
	// from it. The fuzzer's case: ethertype IPv6, first byte 0x45, to an IPv6 GUE VIP.
	v6gue := packet(t, client6, gue6Key.Addr, tcp(40100, 80, true, false))
	v6gue[14] = 0x45
	drop("ethertype ipv6, version 4, to a gue ipv6 vip", v6gue, "drop_malformed")
	v6ack := packet(t, client6, vip6, tcp(40101, 80, false, true))
	v6ack[14] = 0x40 | v6ack[14]&0x0f
	drop("ethertype ipv6, version 4, to an ipv6 vip", v6ack, "drop_malformed")
	v4six := packet(t, client, vip, tcp(40102, 80, true, false))
	v4six[14] = 0x65
	drop("ethertype ipv4, version 6, to an ipv4 vip", v4six, "drop_malformed")
	echo4as6 := echoFrame(t, clientMAC, lbMAC, client, vip, false, 64)
	echo4as6[14] = 0x65
	drop("ethertype ipv4, version 6, echo to a vip", echo4as6, "drop_malformed")
	echo6as4 := echoFrame(t, clientMAC, lbMAC, client6, vip6, false, 64)
	echo6as4[14] = 0x45
	drop("ethertype ipv6, version 4, echo to a vip", echo6as4, "drop_malformed")

	// 2. bytes past the IP length are not carried: tot_len 40 and 1,541 trailing bytes on a
	// 1,600-byte encapsulation MTU left as a 1,601-byte outer packet. Now the 40-byte
	// packet alone is encapsulated.
	short := packet(t, client, vip, l4{proto: layers.IPProtocolTCP, sport: 40103, dport: 80, ack: true})
	short = trimmed(short)
	long := append(append([]byte{}, short...), make([]byte, 1541)...)
	for i := len(short); i < len(long); i++ {
		long[i] = byte(i)
	}
	f := Flow{Src: client, Dst: vip, SrcPort: 40103, DstPort: 80, Proto: 6}
	tx("trailer of 1541 bytes: cut before the tunnel", long,
		encapExpected(t, owner(vips[webKey], f), l3(short), true, 0, 0, f.Hash(testSeed), false), "tx")
	f6 := Flow{Src: client6, Dst: gue6Key.Addr, SrcPort: 40104, DstPort: 80, Proto: 6}
	short6 := trimmed(packet(t, client6, gue6Key.Addr, l4{proto: layers.IPProtocolTCP, sport: 40104, dport: 80, ack: true}))
	long6 := append(append([]byte{}, short6...), make([]byte, 1600)...)
	tx("ipv6 trailer beyond the mtu: cut before the tunnel", long6,
		encapExpected(t, owner(vips[gue6Key], f6), l3(short6), false, 0, 0, f6.Hash(testSeed), true), "tx")

	// 3. the ports must lie inside the IP packet: a 20-byte IPv4 packet whose "ports" are
	// its trailer, and IPv6 with payload length 0
	drop("ipv4 tot_len 20, ports in the trailer",
		mustHex(t, "020000000002020000000001080045000014123400004006dc80c6120001c612000a9c400050000003e80000000050020200814c0000"),
		"drop_malformed")
	pl0 := packet(t, client6, vip6, tcp(40105, 80, true, false))
	pl0[14+4], pl0[14+5] = 0, 0
	drop("ipv6 payload length 0, ports in the trailer", pl0, "drop_malformed")
	udpShort := packet(t, client, dnsKey.Addr, udp(40106, 53))
	udpShort[14+2], udpShort[14+3] = 0, 20+4 // half a UDP header inside the packet
	drop("ipv4 udp header cut by tot_len", udpShort, "drop_malformed")
	doff := packet(t, client, vip, tcp(40107, 80, true, false))
	doff[14+20+12] = 0x40 // data offset 4: shorter than a TCP header
	drop("tcp data offset below 5", doff, "drop_malformed")

	// 4. echo requests are answered only when whole and correct
	drop("echo: tot_len beyond the frame",
		mustHex(t, "0200000000020200000000010800450005dc123400004001d6bdc6120001c612000a0800f7f500070003"), "drop_malformed")
	drop("echo: tot_len 20, no room for icmp",
		mustHex(t, "020000000002020000000001080045000014123400004001dc85c6120001c612000a0800f7f500070003"), "drop_malformed")
	drop("echo: wrong checksum",
		mustHex(t, "02000000000202000000000108004500001c123400004001dc7dc6120001c612000a0800adaf00070003"), "drop_malformed")
	e6 := echoFrame(t, clientMAC, lbMAC, client6, vip6, false, 64)
	e6long := append([]byte{}, e6...)
	e6long[14+4], e6long[14+5] = 0x05, 0xdc
	drop("echo6: payload length beyond the frame", e6long, "drop_malformed")
	e6short := append([]byte{}, e6...)
	e6short[14+4], e6short[14+5] = 0, 4
	drop("echo6: payload length 4, no room for icmpv6", e6short, "drop_malformed")
	e6sum := append([]byte{}, e6...)
	e6sum[14+40+2] ^= 0x5a
	drop("echo6: wrong checksum", e6sum, "drop_malformed")

	// 5. no answer to broadcast, multicast or unspecified sources, and answers leave from
	// the interface's own MAC whatever the request was sent to
	drop("echo from the limited broadcast address",
		mustHex(t, "02000000000202000000000108004500001c123400004001a291ffffffffc612000a0800f7f500070003"), "drop_bad_source")
	drop("echo from a multicast address", echoFrame(t, clientMAC, lbMAC, netip.MustParseAddr("224.0.0.1"), vip, false, 64), "drop_bad_source")
	drop("echo from 0.0.0.0", echoFrame(t, clientMAC, lbMAC, netip.MustParseAddr("0.0.0.0"), vip, false, 64), "drop_bad_source")
	drop("echo from a group mac", echoFrame(t, []byte{0x03, 0, 0, 0, 0, 1}, lbMAC, client, vip, false, 64), "drop_bad_source")
	drop("echo6 from a multicast address", echoFrame(t, clientMAC, lbMAC, netip.MustParseAddr("ff02::1"), vip6, false, 64), "drop_bad_source")
	drop("echo6 from ::", echoFrame(t, clientMAC, lbMAC, netip.IPv6Unspecified(), vip6, false, 64), "drop_bad_source")
	tx("echo to the broadcast mac: answered from the interface's mac",
		mustHex(t, "ffffffffffff02000000000108004500001c123400004001dc7dc6120001c612000a0800f7f500070003"),
		trimmed(echoFrame(t, lbMAC, clientMAC, vip, client, true, 64)), "icmp_echo_reply")
	tx("echo6 to a multicast mac: answered from the interface's mac",
		echoFrame(t, []byte{0x02, 0, 0, 0, 0, 1}, []byte{0x33, 0x33, 0, 0, 0, 0x10}, client6, vip6, false, 64),
		trimmed(echoFrame(t, lbMAC, clientMAC, vip6, client6, true, 64)), "icmp_echo_reply")
	ping := trimmed(echoFrame(t, clientMAC, lbMAC, client, vip, false, 64))
	tx("echo with an ethernet trailer: the reply has none", append(append([]byte{}, ping...), 0xde, 0xad, 0xbe, 0xef),
		trimmed(echoFrame(t, lbMAC, clientMAC, vip, client, true, 64)), "icmp_echo_reply")
	// a too-big packet from a source that must not hear back is dropped, not answered
	big := tcp(40108, 80, false, true)
	big.payload = make([]byte, 1600-40)
	big.flags = layers.IPv4DontFragment
	big.srcMAC = []byte{0x01, 0, 0x5e, 0, 0, 1}
	drop("too big, from a group mac", packet(t, client, vip, big), "drop_bad_source")
	drop("syn from the limited broadcast address", packet(t, netip.MustParseAddr("255.255.255.255"), vip, tcp(40109, 80, true, false)), "drop_bad_source")
	drop("syn from a multicast address", packet(t, netip.MustParseAddr("239.1.2.3"), vip, tcp(40110, 80, true, false)), "drop_bad_source")
	drop("syn6 from a multicast address", packet(t, netip.MustParseAddr("ff0e::1"), vip6, tcp(40111, 80, true, false)), "drop_bad_source")
	drop("udp from loopback", packet(t, netip.MustParseAddr("127.0.0.1"), dnsKey.Addr, udp(40112, 53)), "drop_bad_source")

	runFixtures(t, lb, cases)

	// a large echo (1,400 bytes of payload) is answered whole, its checksum still right
	bigEcho := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Id: 1, Protocol: layers.IPProtocolICMPv4, SrcIP: client.AsSlice(), DstIP: vip.AsSlice()},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 9, Seq: 1}, gopacket.Payload(make([]byte, 1401)))
	wantBig := serialize(t, &layers.Ethernet{SrcMAC: lbMAC, DstMAC: clientMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Id: 1, Protocol: layers.IPProtocolICMPv4, SrcIP: vip.AsSlice(), DstIP: client.AsSlice()},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), Id: 9, Seq: 1}, gopacket.Payload(make([]byte, 1401)))
	runFixtures(t, lb, []fixture{{name: "echo of 1429 bytes, odd length", in: bigEcho, wantAction: xdpTX, want: wantBig, wantReason: "icmp_echo_reply"}})
}

// the backend accepts tunnelled packets only from the LB nodes' sources and only for the
// VIPs it serves; everything it refuses is dropped and counted by reason
func TestBackendTrustBoundary(t *testing.T) {
	b := mustLoadBackendHost(t, beAddrs[1], netip.Addr{})
	stranger, stranger6 := netip.MustParseAddr("198.18.1.66"), netip.MustParseAddr("2001:db8:1::66")
	otherVIP := netip.MustParseAddr("198.18.0.77")

	// inner in an outer header from src to dst (IPIP, or GUE to GUEPort), built whatever
	// the inner bytes say of themselves
	from := func(src, dst netip.Addr, inner []byte, innerV4, gue bool) []byte {
		var ls []gopacket.SerializableLayer
		next := layers.IPProtocolIPv6
		if innerV4 {
			next = layers.IPProtocolIPv4
		}
		if gue {
			next = layers.IPProtocolUDP
		}
		if src.Is4() {
			ls = append(ls, &layers.Ethernet{SrcMAC: lbMAC, DstMAC: beMACs[0], EthernetType: layers.EthernetTypeIPv4},
				&layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: next, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()})
		} else {
			ls = append(ls, &layers.Ethernet{SrcMAC: lbMAC, DstMAC: beMACs[0], EthernetType: layers.EthernetTypeIPv6},
				&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()})
		}
		if gue { // the UDP header as the LB writes it: no checksum
			n := 8 + len(inner)
			inner = append([]byte{0xc1, 0x23, byte(GUEPort >> 8), byte(GUEPort & 0xff), byte(n >> 8), byte(n), 0, 0}, inner...)
		}
		return serialize(t, append(ls, gopacket.Payload(inner))...)
	}
	toVIP := l3(packet(t, client, vip, tcp(40200, 80, true, false)))
	toVIP6 := l3(packet(t, client6, vip6, tcp(40201, 80, true, false)))
	toOther := l3(packet(t, client, otherVIP, udp(40202, 53)))
	cases := []struct {
		name    string
		in      []byte
		verdict uint32
		reason  string // "" when nothing is counted (passed untouched)
	}{
		{"gue from outside the lb sources", from(stranger, beAddrs[0], toVIP, true, true), xdpDrop, "refused_source"},
		{"ipip from outside the lb sources", from(stranger, beAddrs[0], toVIP, true, false), xdpDrop, "refused_source"},
		{"gue over ipv6 from outside the lb sources", from(stranger6, beAddrs6[0], toVIP6, false, true), xdpDrop, "refused_source"},
		{"ipip from an lb, for a vip not served here", from(lbAddr, beAddrs[0], toOther, true, false), xdpDrop, "refused_vip"},
		{"gue over ipv6 from an lb, inner ipv4 for a vip not served here", from(lbAddr6, beAddrs6[0], toOther, true, true), xdpDrop, "refused_vip"},
		{"ipip whose inner version is 6", func() []byte {
			in := append([]byte{}, toVIP...)
			in[0] = 0x65
			return from(lbAddr, beAddrs[0], in, true, false)
		}(), xdpDrop, "decap_malformed"},
		{"inner tot_len beyond the outer packet", func() []byte {
			in := append([]byte{}, toVIP...)
			in[2], in[3] = 0x05, 0xdc
			return from(lbAddr, beAddrs[0], in, true, false)
		}(), xdpDrop, "decap_malformed"},
		{"outer tot_len beyond the frame", func() []byte {
			fr := from(lbAddr, beAddrs[0], toVIP, true, false)
			fr[14+2], fr[14+3] = 0x05, 0xdc
			return fr
		}(), xdpDrop, "decap_malformed"},
		{"inner ports beyond the inner packet", func() []byte {
			in := append([]byte{}, toVIP...)
			in[2], in[3] = 0, 20
			return from(lbAddr, beAddrs[0], in, true, false)
		}(), xdpDrop, "decap_malformed"},
		{"gue from an lb, for a served vip", from(lbAddr, beAddrs[0], l3(packet(t, client, vip, tcp(40204, 80, true, false))), true, true), xdpPass, "decap"},
		{"udp to another port is not gue: the host's", trimmed(packet(t, stranger, beAddrs[0], udp(40203, 6081))), xdpPass, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, err := b.Stats()
			if err != nil {
				t.Fatal(err)
			}
			ret, out := run(t, b.objs.XdpDecap, c.in)
			if ret != c.verdict {
				t.Fatalf("verdict %d, want %d", ret, c.verdict)
			}
			if c.reason == "" && diffPackets(c.in, out) != "" {
				t.Fatalf("passed packet changed: %s", diffPackets(c.in, out))
			}
			after, err := b.Stats()
			if err != nil {
				t.Fatal(err)
			}
			checkOneCounter(t, before.Counters, after.Counters, c.reason)
		})
	}
	// a refused packet records no flow: a reply on its tuple keeps its own source
	reply := packet(t, beAddrs[0], client, tcp(80, 40200, false, true))
	if ret, out := run(t, b.objs.TcEgress, reply); ret != tcxNext || diffPackets(reply, out) != "" {
		t.Errorf("reply of a refused flow: verdict %#x, changed: %s", ret, diffPackets(reply, out))
	}
}
