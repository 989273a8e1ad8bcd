package dataplane

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// echo builds an ICMP (v4) or ICMPv6 echo request or reply from src to dst.
func echo(t *testing.T, srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, reply bool, ttl uint8) []byte {
	t.Helper()
	payload := gopacket.Payload("lbd ping payload, 32 bytes long!")
	if src.Is4() {
		typ := uint8(layers.ICMPv4TypeEchoRequest)
		if reply {
			typ = layers.ICMPv4TypeEchoReply
		}
		return serialize(t, &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4},
			&layers.IPv4{Version: 4, TTL: ttl, Id: 0x4242, Protocol: layers.IPProtocolICMPv4, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()},
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: 7, Seq: 3}, payload)
	}
	typ := uint8(layers.ICMPv6TypeEchoRequest)
	if reply {
		typ = layers.ICMPv6TypeEchoReply
	}
	ip := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	_ = ic.SetNetworkLayerForChecksum(ip)
	return serialize(t, &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv6},
		ip, ic, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 3}, payload)
}

func TestEchoToVIPAnsweredAtTheLB(t *testing.T) {
	lb, _ := fixtureLB(t)
	for _, c := range []struct {
		name        string
		client, vip netip.Addr
	}{
		{"icmp echo to an ipv4 vip", client, vip},
		{"icmpv6 echo to an ipv6 vip", client6, vip6},
		{"icmp echo to a port-wildcard vip", client, anyKey.Addr},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := echo(t, clientMAC, lbMAC, c.client, c.vip, false, 61)
			ret, out := run(t, lb.objs.XdpLb, in)
			if ret != xdpTX {
				t.Fatalf("verdict %d, want XDP_TX", ret)
			}
			if d := diffPackets(echo(t, lbMAC, clientMAC, c.vip, c.client, true, 64), out); d != "" {
				t.Fatal(d)
			}
		})
	}
	// echo to an address that is no VIP, and an echo reply to a VIP, are the host's business
	for _, in := range [][]byte{
		echo(t, clientMAC, lbMAC, client, netip.MustParseAddr("198.18.0.99"), false, 64),
		echo(t, clientMAC, lbMAC, client, vip, true, 64),
	} {
		if ret, out := run(t, lb.objs.XdpLb, in); ret != xdpPass || diffPackets(in, out) != "" {
			t.Errorf("verdict %d, changed: %s", ret, diffPackets(in, out))
		}
	}
	st, _ := lb.Stats()
	if st.Verdicts["icmp_echo_reply"].Packets != 3 {
		t.Errorf("icmp_echo_reply = %d, want 3: %v", st.Verdicts["icmp_echo_reply"].Packets, st.Verdicts)
	}
	// once the VIP is gone, so is the answer
	mustApply(t, lb)
	if ret, _ := run(t, lb.objs.XdpLb, echo(t, clientMAC, lbMAC, client, vip, false, 64)); ret != xdpPass {
		t.Errorf("echo to a removed VIP: verdict %d, want pass", ret)
	}
}

// TestTooBigAnsweredForPMTUDiscovery: a packet that would not fit once encapsulated gets
// "fragmentation needed" (IPv4 with DF) or "packet too big" (IPv6) naming the size that fits,
// from the LB's address, quoting the packet's headers; IPv4 without DF is dropped.
func TestTooBigAnsweredForPMTUDiscovery(t *testing.T) {
	lb, _ := fixtureLB(t) // MTU 1600 toward the backends
	big := tcp(49000, 80, false, true)
	big.payload = make([]byte, 1600-40) // 1600 bytes of inner packet: no room for 20 more
	big.flags = layers.IPv4DontFragment
	in := packet(t, client, vip, big)
	ret, out := run(t, lb.objs.XdpLb, in)
	if ret != xdpTX {
		t.Fatalf("v4 with DF: verdict %d, want XDP_TX (an ICMP answer)", ret)
	}
	quote := gopacket.Payload(l3(in)[:28])
	want := serialize(t, &layers.Ethernet{SrcMAC: lbMAC, DstMAC: clientMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolICMPv4,
			SrcIP: lbAddr.AsSlice(), DstIP: client.AsSlice()},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded),
			Seq: 1600 - 20}, quote)
	if d := diffPackets(want, out); d != "" {
		t.Fatal(d)
	}

	big6 := tcp(49001, 80, false, true)
	big6.payload = make([]byte, 1600-60)
	in6 := packet(t, client6, vip6, big6)
	ret, out = run(t, lb.objs.XdpLb, in6)
	if ret != xdpTX {
		t.Fatalf("v6: verdict %d, want XDP_TX (an ICMPv6 answer)", ret)
	}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: lbAddr6.AsSlice(), DstIP: client6.AsSlice()}
	ic6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0)}
	_ = ic6.SetNetworkLayerForChecksum(ip6)
	mtu := []byte{0, 0, (1600 - 40) >> 8, (1600 - 40) & 0xff}
	want6 := serialize(t, &layers.Ethernet{SrcMAC: lbMAC, DstMAC: clientMAC, EthernetType: layers.EthernetTypeIPv6},
		ip6, ic6, gopacket.Payload(append(mtu, l3(in6)[:48]...)))
	if d := diffPackets(want6, out); d != "" {
		t.Fatal(d)
	}

	noDF := big
	noDF.flags = 0
	if ret, _ := run(t, lb.objs.XdpLb, packet(t, client, vip, noDF)); ret != xdpDrop {
		t.Fatalf("v4 without DF: verdict %d, want drop", ret)
	}
	st, _ := lb.Stats()
	if st.Verdicts["icmp_too_big"].Packets != 2 || st.Verdicts["drop_too_big"].Packets != 1 {
		t.Errorf("verdicts %+v", st.Verdicts)
	}
}
