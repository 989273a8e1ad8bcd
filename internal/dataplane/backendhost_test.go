package dataplane

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

const tcxNext = 0xffffffff // TCX_NEXT (-1) as the test run reports it

// what the test backends trust: the fixture LB's encapsulation sources, and the VIPs
var (
	testLBSources  = []netip.Prefix{netip.PrefixFrom(lbAddr, 32), netip.PrefixFrom(lbAddr6, 128)}
	testServedVIPs = []VIPKey{{Addr: vip}, {Addr: vip6}}
)

func mustLoadBackendHost(tb testing.TB, local4, local6 netip.Addr) *BackendHost {
	tb.Helper()
	requireRoot(tb)
	b, err := loadBackendHost(BackendHostConfig{Local4: local4, Local6: local6, LBSources: testLBSources, VIPs: testServedVIPs}, "")
	if err != nil {
		tb.Fatalf("load backend programs: %+v", err)
	}
	tb.Cleanup(func() { b.objs.Close() })
	return b
}

// encapsulated is the frame an LB sends to backend be for inner (an L3 packet).
func encapsulated(tb testing.TB, be netip.Addr, inner []byte, innerV4, gue bool) []byte {
	return encapExpected(tb, Backend{Addr: be, SrcMAC: lbMAC, DstMAC: beMACs[0]}, inner, innerV4, 0, 0, 0x1234, gue)
}

func TestDecapAndRestore(t *testing.T) {
	cases := []struct {
		name            string
		client, vip, be netip.Addr
		outer           netip.Addr // outer destination
		p               l4
		gue             bool
	}{
		{"tcp 4in4", client, vip, beAddrs[0], beAddrs[0], tcp(40000, 80, true, false), false},
		{"udp 4in4", client, vip, beAddrs[0], beAddrs[0], udp(40001, 53), false},
		{"tcp 6in6", client6, vip6, beAddrs6[0], beAddrs6[0], tcp(40002, 80, true, false), false},
		{"udp 6in6", client6, vip6, beAddrs6[0], beAddrs6[0], udp(40003, 53), false},
		{"tcp 4in6: the backend's own IPv4 address", client, vip, beAddrs[1], beAddrs6[0], tcp(40004, 80, false, true), false},
		{"tcp gue over ipv4", client, vip, beAddrs[0], beAddrs[0], tcp(40005, 80, true, false), true},
		{"udp gue over ipv6", client6, vip6, beAddrs6[0], beAddrs6[0], udp(40006, 53), true},
		{"tcp 4in6 gue", client, vip, beAddrs[1], beAddrs6[0], tcp(40007, 80, false, true), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := mustLoadBackendHost(t, beAddrs[1], netip.Addr{})
			toVIP := packet(t, c.client, c.vip, c.p)
			in := encapsulated(t, c.outer, l3(toVIP), c.client.Is4(), c.gue)
			ret, out := run(t, b.objs.XdpDecap, in)
			if ret != xdpPass {
				t.Fatalf("decap verdict %d, want XDP_PASS", ret)
			}
			// what the application must see: the client talking to this backend's address
			p := c.p
			p.srcMAC, p.dstMAC = lbMAC, beMACs[0]
			want := packet(t, c.client, c.be, p)
			if d := diffPackets(want, out); d != "" {
				t.Fatal(d)
			}

			// the reply leaves with the VIP restored as its source
			r := c.p
			r.sport, r.dport, r.syn, r.ack = c.p.dport, c.p.sport, c.p.syn, true
			r.srcMAC, r.dstMAC = beMACs[0], clientMAC
			ret, out = run(t, b.objs.TcEgress, packet(t, c.be, c.client, r))
			if ret != tcxNext {
				t.Fatalf("egress verdict %#x, want TCX_NEXT", ret)
			}
			if d := diffPackets(packet(t, c.vip, c.client, r), out); d != "" {
				t.Fatal(d)
			}
			st, err := b.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Counters["decap"].Packets != 1 || st.Counters["restored"].Packets != 1 {
				t.Errorf("counters %+v", st.Counters)
			}
			vk := VIPKey{Addr: c.vip, Port: c.p.dport, Proto: uint8(c.p.proto)}
			if got := st.Return[vk]; got.Packets != 1 || got.Bytes == 0 {
				t.Errorf("return traffic of %s: %+v (all: %v)", vk, got, st.Return)
			}
		})
	}
}

func TestBackendLeavesOtherTrafficAlone(t *testing.T) {
	b := mustLoadBackendHost(t, netip.Addr{}, netip.Addr{})
	plain := packet(t, client, beAddrs[0], tcp(40000, 80, true, false))
	if ret, out := run(t, b.objs.XdpDecap, plain); ret != xdpPass || diffPackets(plain, out) != "" {
		t.Errorf("plain packet: verdict %d, changed: %s", ret, diffPackets(plain, out))
	}
	// a reply of a flow that never came through the tunnel keeps its source
	reply := packet(t, beAddrs[0], client, tcp(80, 40000, false, true))
	if ret, out := run(t, b.objs.TcEgress, reply); ret != tcxNext || diffPackets(reply, out) != "" {
		t.Errorf("unrecorded reply: verdict %#x, changed: %s", ret, diffPackets(reply, out))
	}
	arp := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: clientMAC, SourceProtAddress: client.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: beAddrs[0].AsSlice()})
	if ret, _ := run(t, b.objs.XdpDecap, arp); ret != xdpPass {
		t.Errorf("arp: verdict %d", ret)
	}
	// an IPIP packet whose inner header is cut short is dropped and counted
	inner := l3(packet(t, client, vip, tcp(40000, 80, true, false)))[:20+8]
	bad := serialize(t, &layers.Ethernet{SrcMAC: lbMAC, DstMAC: beMACs[0], EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolIPv4, SrcIP: lbAddr.AsSlice(), DstIP: beAddrs[0].AsSlice()},
		gopacket.Payload(inner))
	if ret, _ := run(t, b.objs.XdpDecap, bad); ret != xdpDrop {
		t.Errorf("truncated inner packet: verdict %d, want drop", ret)
	}
	st, _ := b.Stats()
	if st.Counters["decap_malformed"].Packets != 1 || st.Counters["decap"].Packets != 0 {
		t.Errorf("counters %+v", st.Counters)
	}
}
