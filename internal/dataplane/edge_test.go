package dataplane

import (
	"net/netip"
	"strconv"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Fixtures at the edges of what xdp_lb parses: every header boundary cut, header fields
// that disagree with the frame, headers it does not balance, and the shapes of ordinary
// traffic it must carry unchanged. Each gives one verdict, exact bytes, one reason.
func TestEdgeFixtures(t *testing.T) {
	lb, vips := fixtureLB(t)
	var cases []fixture
	drop := func(name string, in []byte, reason string) {
		cases = append(cases, fixture{name: name, in: in, wantAction: xdpDrop, wantReason: reason})
	}
	pass := func(name string, in []byte, reason string) {
		cases = append(cases, fixture{name: name, in: in, wantAction: xdpPass, want: in, wantReason: reason})
	}
	tx := func(name string, key VIPKey, src netip.Addr, in []byte, p l4) {
		f := Flow{Src: src, Dst: key.Addr, SrcPort: p.sport, DstPort: p.dport, Proto: uint8(p.proto)}
		cases = append(cases, fixture{name: name, in: in, wantAction: xdpTX, wantReason: "tx",
			want: encapExpected(t, owner(vips[key], f), l3(in), src.Is4(), p.tos, p.vlan, f.Hash(testSeed), vips[key].GUE)})
	}

	// cut at every header boundary, and inside each header
	syn := trimmed(packet(t, client, vip, tcp(41100, 80, true, false)))
	for _, n := range []int{14, 14 + 1, 14 + 10, 14 + 19, 14 + 20, 14 + 20 + 1, 14 + 20 + 10, 14 + 20 + 19} {
		drop("ipv4 tcp cut to "+strconv.Itoa(n)+" bytes", syn[:n], "drop_malformed")
	}
	syn6 := trimmed(packet(t, client6, vip6, tcp(41101, 80, true, false)))
	for _, n := range []int{14, 14 + 20, 14 + 39, 14 + 40, 14 + 40 + 10, 14 + 40 + 19} {
		drop("ipv6 tcp cut to "+strconv.Itoa(n)+" bytes", syn6[:n], "drop_malformed")
	}
	dns := trimmed(packet(t, client, dnsKey.Addr, udp(41102, 53)))
	for _, n := range []int{14 + 20, 14 + 20 + 4, 14 + 20 + 7} {
		drop("ipv4 udp cut to "+strconv.Itoa(n)+" bytes", dns[:n], "drop_malformed")
	}
	tagged := tcp(41103, 80, true, false)
	tagged.vlan = 7
	vsyn := trimmed(packet(t, client, vip, tagged))
	for _, n := range []int{14 + 1, 14 + 3, 18 + 10} {
		drop("vlan tagged, cut to "+strconv.Itoa(n)+" bytes", vsyn[:n], "drop_malformed")
	}

	// lengths that disagree with the frame
	short := append([]byte{}, syn...)
	short[14+2], short[14+3] = 0, 30 // tot_len 30: 10 bytes of a 20-byte TCP header
	drop("ipv4 tot_len smaller than its tcp header", short, "drop_malformed")
	under := append([]byte{}, syn...)
	under[14+2], under[14+3] = 0, 19
	drop("ipv4 tot_len under 20", under, "drop_malformed")
	long6 := append([]byte{}, syn6...)
	long6[14+5]++
	drop("ipv6 payload length one byte beyond the frame", long6, "drop_malformed")
	ihl15 := append([]byte{}, syn...)
	ihl15[14] = 0x4f
	pass("ihl 15: options, the host's", ihl15, "pass")
	ihl0 := append([]byte{}, syn...)
	ihl0[14] = 0x40
	drop("ihl 0", ihl0, "drop_malformed")
	v0 := append([]byte{}, syn...)
	v0[14] = 0x05
	drop("version 0", v0, "drop_malformed")
	v7 := append([]byte{}, syn6...)
	v7[14] = 0x70 | v7[14]&0x0f
	drop("ipv6 ethertype, version 7", v7, "drop_malformed")
	doff15 := append([]byte{}, syn...)
	doff15[14+20+12] = 0xf0 // data offset 60 bytes in a 20-byte segment
	drop("tcp data offset beyond the packet", doff15, "drop_malformed")

	// what xdp_lb leaves to the host
	qinq := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeQinQ},
		&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv4}, gopacket.Payload(l3(syn)))
	pass("qinq: two tags, the host's", qinq, "pass")
	hbh := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv6},
		&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6HopByHop, SrcIP: client6.AsSlice(), DstIP: vip6.AsSlice()},
		gopacket.Payload(append([]byte{6, 0, 1, 4, 0, 0, 0, 0}, l3(syn6)[40:]...)))
	pass("ipv6 hop-by-hop header before tcp: the host's", hbh, "pass")
	frag6 := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv6},
		&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Fragment, SrcIP: client6.AsSlice(), DstIP: vip6.AsSlice()},
		gopacket.Payload(append([]byte{6, 0, 0, 1, 0, 0, 0, 42}, l3(syn6)[40:]...)))
	tx("ipv6 first fragment of a tcp syn: balanced by its ports", web6Key, client6, frag6, tcp(41101, 80, true, false))
	fragLater := tcp(41104, 80, false, true)
	fragLater.fragOff = 185
	drop("ipv4 later fragment to a vip, its first not seen", packet(t, client, vip, fragLater), "drop_fragment_orphan")
	unreach := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: client.AsSlice(), DstIP: vip.AsSlice()},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)},
		gopacket.Payload(l3(syn)[:28]))
	pass("icmp destination unreachable to a vip: the host's", unreach, "pass")
	ipip := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolIPv4, SrcIP: client.AsSlice(), DstIP: vip.AsSlice()},
		gopacket.Payload(l3(syn)))
	pass("an ipip packet to a vip: the host's", ipip, "pass")
	gre := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolGRE, SrcIP: client.AsSlice(), DstIP: vip.AsSlice()},
		gopacket.Payload([]byte{0, 0, 8, 0}))
	pass("gre to a vip address: the host's", gre, "pass")
	sctp := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolSCTP, SrcIP: client.AsSlice(), DstIP: vip.AsSlice()},
		gopacket.Payload(make([]byte, 12)))
	pass("sctp to a vip address: the host's", sctp, "pass")
	pass("ipv6 to a non-vip address, cut inside tcp: the host's", trimmed(packet(t, client6, netip.MustParseAddr("2001:db8::99"), tcp(1, 2, true, false)))[:14+40+5], "pass")
	pass("ipv4 to a non-vip address, tot_len beyond the frame: the host's", func() []byte {
		b := trimmed(packet(t, client, netip.MustParseAddr("198.18.0.99"), tcp(1, 2, true, false)))
		b[14+2], b[14+3] = 0x05, 0xdc
		return b
	}(), "pass")
	arp6 := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeLLC}, gopacket.Payload(make([]byte, 46)))
	pass("an 802.3 length field for an ethertype: the host's", arp6, "pass")

	// ordinary traffic, carried whole
	mss := tcp(41105, 80, true, false)
	mssPkt := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Id: 0x1234, Protocol: layers.IPProtocolTCP, SrcIP: client.AsSlice(), DstIP: vip.AsSlice()},
		func() *layers.TCP {
			th := &layers.TCP{SrcPort: 41105, DstPort: 80, SYN: true, Seq: 1000, Window: 512, Options: []layers.TCPOption{
				{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
				{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
				{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
			}}
			_ = th.SetNetworkLayerForChecksum(&layers.IPv4{SrcIP: client.AsSlice(), DstIP: vip.AsSlice(), Protocol: layers.IPProtocolTCP})
			return th
		}())
	tx("tcp syn with options (mss, sack, window scale)", webKey, client, mssPkt, mss)
	zero := udp(41106, 53)
	zeroPkt := packet(t, client, dnsKey.Addr, zero)
	zeroPkt[14+20+6], zeroPkt[14+20+7] = 0, 0 // no UDP checksum, as IPv4 allows
	tx("udp with a zero checksum", dnsKey, client, zeroPkt, zero)
	ttl1 := packet(t, client, vip, tcp(41107, 80, false, true))
	ttl1[14+8] = 1
	ttl1[14+10], ttl1[14+11] = 0, 0
	sum := ipv4HeaderSum(ttl1[14 : 14+20])
	ttl1[14+10], ttl1[14+11] = byte(sum>>8), byte(sum)
	tx("a vip packet with ttl 1: carried as it came (the lb is no router hop)", webKey, client, ttl1, tcp(41107, 80, false, true))
	hop1 := packet(t, client6, vip6, tcp(41108, 80, false, true))
	hop1[14+7] = 1
	tx("an ipv6 vip packet with hop limit 1", web6Key, client6, hop1, tcp(41108, 80, false, true))
	rst := tcp(41109, 80, false, false)
	tx("tcp rst, no ack", webKey, client, packet(t, client, vip, l4{proto: layers.IPProtocolTCP, sport: 41109, dport: 80}), rst)
	big := tcp(41110, 80, false, true)
	big.payload = make([]byte, 1600-20-40) // exactly the MTU once encapsulated
	tx("a packet that just fits the mtu once encapsulated", webKey, client, packet(t, client, vip, big), big)
	tx("tcp ack over ipv6 to a gue vip", gue6Key, client6, packet(t, client6, gue6Key.Addr, tcp(41112, 80, false, true)), tcp(41112, 80, false, true))

	runFixtures(t, lb, cases)
}

// ipv4HeaderSum is the checksum of an IPv4 header whose check field is zero.
func ipv4HeaderSum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
