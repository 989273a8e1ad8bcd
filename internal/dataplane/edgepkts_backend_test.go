package dataplane

import (
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"
)

// The backend's side of the edge packets (bpf/be_edge.h): an ICMP error about a flow
// served here reaches the kernel as an error about the packet this host sent, and the
// fragments of a datagram to a VIP reach it addressed to this host, ready to reassemble.

// withMACs is frame with its Ethernet addresses replaced.
func withMACs(frame []byte, src, dst net.HardwareAddr) []byte {
	out := append([]byte{}, frame...)
	copy(out[0:6], dst)
	copy(out[6:12], src)
	return out
}

// backendFixture is one tunnelled packet through xdp_decap: the verdict, the exact frame
// out (nil: not compared) and the one counter that must move ("": none).
type backendFixture struct {
	name    string
	in      []byte
	verdict uint32
	want    []byte
	reason  string
}

func runBackendFixtures(t *testing.T, b *BackendHost, cases []backendFixture) {
	t.Helper()
	runHostFixtures(t, b, b.objs.XdpDecap, cases)
}

// runHostFixtures runs the cases through prog, one of the backend's programs.
func runHostFixtures(t *testing.T, b *BackendHost, prog *ebpf.Program, cases []backendFixture) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, err := b.Stats()
			if err != nil {
				t.Fatal(err)
			}
			ret, out := run(t, prog, c.in)
			if ret != c.verdict {
				t.Fatalf("verdict %d, want %d", ret, c.verdict)
			}
			if c.want != nil {
				if d := diffPackets(c.want, out); d != "" {
					t.Fatal(d)
				}
			}
			after, err := b.Stats()
			if err != nil {
				t.Fatal(err)
			}
			checkOneCounter(t, before.Counters, after.Counters, c.reason)
		})
	}
}

func TestDecapICMPErrorFixtures(t *testing.T) {
	b := mustLoadBackendHost(t, beAddrs[1], netip.Addr{})
	otherVIP := netip.MustParseAddr("198.18.0.77")
	var cases []backendFixture
	// delivered: the backend at self sent sent (an L3 packet from self); tc_egress made its
	// source the VIP; a router's error about it (typ, code, rest; n bytes quoted) reaches
	// the LB, which tunnels it to outer (gue: in UDP). Decap must hand the kernel the error
	// as if it were about sent itself, addressed to self.
	delivered := func(name string, self, vipAddr, outer netip.Addr, sent []byte, n int, typ, code uint8, rest uint32, gue bool) {
		asVIP := append([]byte{}, sent...)
		from := router
		if self.Is6() {
			from = router6
		}
		asVIP = readdress(t, asVIP, vipAddr)
		inner := l3(icmpError(t, from, asVIP, n, typ, code, rest, 0))
		cases = append(cases, backendFixture{name: name, in: encapsulated(t, outer, inner, vipAddr.Is4(), gue), verdict: xdpPass,
			want: withMACs(icmpError(t, from, sent, n, typ, code, rest, 0), lbMAC, beMACs[0]), reason: "decap_icmp_error"})
	}
	tcpFrom := func(self, to netip.Addr, n int) []byte {
		p := tcp(80, 42000, false, true)
		p.payload, p.flags = make([]byte, n), layers.IPv4DontFragment
		return l3(packet(t, self, to, p))
	}
	udpFrom := func(self, to netip.Addr, n int) []byte {
		p := udp(53, 42001)
		p.payload = make([]byte, n)
		return l3(packet(t, self, to, p))
	}
	delivered("fragmentation needed about a tcp segment, 4in4", beAddrs[0], vip, beAddrs[0], tcpFrom(beAddrs[0], client, 1460), 28, 3, 4, 1280, false)
	delivered("fragmentation needed quoting 548 bytes", beAddrs[0], vip, beAddrs[0], tcpFrom(beAddrs[0], client, 1460), 548, 3, 4, 1280, false)
	delivered("port unreachable about a udp datagram: its checksum restored too", beAddrs[0], vip, beAddrs[0], udpFrom(beAddrs[0], client, 100), 128, 3, 3, 0, false)
	delivered("time exceeded, gue over ipv4", beAddrs[0], vip, beAddrs[0], tcpFrom(beAddrs[0], client, 0), 28, 11, 0, 0, true)
	delivered("fragmentation needed, 4in6: to the backend's own ipv4 address", beAddrs[1], vip, beAddrs6[0], tcpFrom(beAddrs[1], client, 1460), 28, 3, 4, 1280, false)
	delivered("icmpv6 packet too big about a tcp segment, 6in6", beAddrs6[0], vip6, beAddrs6[0], tcpFrom(beAddrs6[0], client6, 1440), 1232, 2, 0, 1280, false)
	delivered("icmpv6 port unreachable about a udp datagram, gue over ipv6", beAddrs6[0], vip6, beAddrs6[0], udpFrom(beAddrs6[0], client6, 100), 148, 1, 4, 0, true)

	// packet too big about the first fragment of a udp reply this host sent: the quote's
	// checksum covers the whole datagram, and moves back with the source all the same
	sentFrag := fragments(udpDatagram(t, beAddrs6[0], client6, 53, 42001, 3000), 0x7000bbbb, 1448)[0]
	asVIP := fragments(udpDatagram(t, vip6, client6, 53, 42001, 3000), 0x7000bbbb, 1448)[0]
	cases = append(cases, backendFixture{name: "icmpv6 packet too big about the first fragment of a udp reply, 6in6",
		in:      encapsulated(t, beAddrs6[0], l3(icmpError(t, router6, asVIP, 1232, 2, 0, 1280, 0)), false, false),
		verdict: xdpPass, want: withMACs(icmpError(t, router6, sentFrag, 1232, 2, 0, 1280, 0), lbMAC, beMACs[0]), reason: "decap_icmp_error"})

	unserved := l3(icmpError(t, router, readdress(t, tcpFrom(beAddrs[0], client, 1460), otherVIP), 28, 3, 4, 1280, 0))
	cases = append(cases, backendFixture{name: "an error about a vip not served here", in: encapsulated(t, beAddrs[0], unserved, true, false),
		verdict: xdpDrop, reason: "refused_vip"})
	odd := l3(icmpError(t, router, readdress(t, tcpFrom(beAddrs[0], client, 1460), vip), 28, 3, 4, 1280, 0))
	copy(odd[28+12:28+16], otherVIP.AsSlice()) // quotes a packet from elsewhere than its destination
	cases = append(cases, backendFixture{name: "an error whose quote is not from its destination", in: encapsulated(t, beAddrs[0], odd, true, false),
		verdict: xdpDrop, reason: "decap_malformed"})
	ping := l3(echo(t, clientMAC, lbMAC, client, vip, false, 64))
	cases = append(cases, backendFixture{name: "an echo request in the tunnel", in: encapsulated(t, beAddrs[0], ping, true, false),
		verdict: xdpDrop, reason: "decap_malformed"})

	runBackendFixtures(t, b, cases)
}

// readdress is the L3 packet p from addr instead, its checksums recomputed as tc_egress
// leaves them (the data path updates them incrementally: the same numbers).
func readdress(t testing.TB, p []byte, addr netip.Addr) []byte {
	t.Helper()
	out := append([]byte{}, p...)
	if addr.Is4() {
		copy(out[12:16], addr.AsSlice())
		out[10], out[11] = 0, 0
		sum := ipv4HeaderSum(out[:20])
		out[10], out[11] = byte(sum>>8), byte(sum)
		fixL4(out[20:], out[12:16], out[16:20], out[9])
		return out
	}
	copy(out[8:24], addr.AsSlice())
	fixL4(out[40:], out[8:24], out[24:40], out[6])
	return out
}

// fixL4 recomputes the TCP or UDP checksum of l4 (a whole segment) from src to dst.
func fixL4(l4, src, dst []byte, proto uint8) {
	off := map[uint8]int{6: 16, 17: 6}[proto]
	if off == 0 {
		return
	}
	l4[off], l4[off+1] = 0, 0
	sum := ^inetSum(l4, pseudoSum(src, dst, proto, len(l4)))
	if sum == 0 && proto == 17 {
		sum = 0xffff
	}
	l4[off], l4[off+1] = byte(sum>>8), byte(sum)
}

func TestDecapFragmentFixtures(t *testing.T) {
	b := mustLoadBackendHost(t, beAddrs[1], netip.Addr{})
	otherVIP := netip.MustParseAddr("198.18.0.77")
	var cases []backendFixture
	// a datagram from the client to the VIP, in fragments through the tunnel to outer; the
	// kernel must get the same datagram's fragments addressed to self
	tunnelled := func(src, dst, outer netip.Addr, id uint32, gue bool) [][]byte {
		var out [][]byte
		for _, f := range fragments(udpDatagram(t, src, dst, 44000, 53, 4000), id, 1448) {
			out = append(out, encapsulated(t, outer, f, dst.Is4(), gue))
		}
		return out
	}
	delivered := func(src, self netip.Addr, id uint32) [][]byte {
		var out [][]byte
		for _, f := range fragments(udpDatagram(t, src, self, 44000, 53, 4000), id, 1448) {
			out = append(out, withMACs(frameOf(t, f), lbMAC, beMACs[0]))
		}
		return out
	}
	ok := func(name string, in, want []byte) {
		cases = append(cases, backendFixture{name: name, in: in, verdict: xdpPass, want: want, reason: "decap_fragment"})
	}
	refused := func(name string, in []byte, reason string) {
		cases = append(cases, backendFixture{name: name, in: in, verdict: xdpDrop, reason: reason})
	}

	in4, want4 := tunnelled(client, vip, beAddrs[0], 0x3001, false), delivered(client, beAddrs[0], 0x3001)
	ok("udp first fragment, 4in4: to this host, the udp checksum moved", in4[0], want4[0])
	ok("its second fragment", in4[1], want4[1])
	ok("its last fragment", in4[2], want4[2])
	refused("a later fragment whose first was not taken", tunnelled(client, vip, beAddrs[0], 0x3002, false)[1], "refused_fragment")
	away := tunnelled(client, otherVIP, beAddrs[0], 0x3003, false)
	refused("a first fragment for a vip not served here", away[0], "refused_vip")
	refused("its later fragment", away[1], "refused_fragment")
	gue4, gueWant := tunnelled(client, vip, beAddrs6[0], 0x3004, true), delivered(client, beAddrs[1], 0x3004)
	ok("udp first fragment, 4in6 gue: to this host's ipv4 address", gue4[0], gueWant[0])
	ok("its last fragment", gue4[2], gueWant[2])
	in6, want6 := tunnelled(client6, vip6, beAddrs6[0], 0x70003005, false), delivered(client6, beAddrs6[0], 0x70003005)
	ok("ipv6 first fragment, 6in6", in6[0], want6[0])
	ok("its second fragment", in6[1], want6[1])
	ok("its last fragment", in6[2], want6[2])
	refused("an ipv6 later fragment whose first was not taken", tunnelled(client6, vip6, beAddrs6[0], 0x70003006, false)[2], "refused_fragment")

	runBackendFixtures(t, b, cases)

	// the first fragments recorded their flows: the replies leave from the VIP
	for _, c := range []struct{ self, vip, client netip.Addr }{{beAddrs[0], vip, client}, {beAddrs6[0], vip6, client6}} {
		r := udp(53, 44000)
		r.srcMAC, r.dstMAC = beMACs[0], clientMAC
		ret, out := run(t, b.objs.TcEgress, packet(t, c.self, c.client, r))
		if ret != tcxNext {
			t.Fatalf("egress verdict %#x", ret)
		}
		if d := diffPackets(packet(t, c.vip, c.client, r), out); d != "" {
			t.Errorf("reply to a fragmented datagram from %s: %s", c.self, d)
		}
	}
}

// Replies the backend's kernel fragments (bpf/be_reply_frag.h): every fragment of a reply
// leaves with the VIP as its source, the first one's UDP checksum moved with it, so the
// client can reassemble the datagram; fragments of flows not recorded here leave as they
// are.
func TestRestoreFragmentedReplyFixtures(t *testing.T) {
	b := mustLoadBackendHost(t, beAddrs[1], netip.Addr{})
	// the queries that record the flows: whole datagrams, 4in4 and 6in6
	for _, q := range [][]byte{
		encapsulated(t, beAddrs[0], udpDatagram(t, client, vip, 44100, 53, 100), true, false),
		encapsulated(t, beAddrs6[0], udpDatagram(t, client6, vip6, 44100, 53, 100), false, false),
	} {
		if ret, _ := run(t, b.objs.XdpDecap, q); ret != xdpPass {
			t.Fatalf("query: verdict %d", ret)
		}
	}
	// the reply from self in fragments, and what the client must get: from the VIP
	answer := func(self, vipAddr, to netip.Addr, id uint32) (in, want [][]byte) {
		for _, f := range fragments(udpDatagram(t, self, to, 53, 44100, 4000), id, 1448) {
			in = append(in, withMACs(frameOf(t, f), beMACs[0], clientMAC))
		}
		for _, f := range fragments(udpDatagram(t, vipAddr, to, 53, 44100, 4000), id, 1448) {
			want = append(want, withMACs(frameOf(t, f), beMACs[0], clientMAC))
		}
		return in, want
	}
	var cases []backendFixture
	restoredCase := func(name string, in, want []byte) {
		cases = append(cases, backendFixture{name: name, in: in, verdict: tcxNext, want: want, reason: "restored"})
	}
	untouched := func(name string, in []byte) {
		cases = append(cases, backendFixture{name: name, in: in, verdict: tcxNext, want: in})
	}
	in4, want4 := answer(beAddrs[0], vip, client, 0x5001)
	restoredCase("ipv4 reply, first fragment: the vip and port back, the udp checksum moved", in4[0], want4[0])
	restoredCase("its second fragment: the vip back", in4[1], want4[1])
	restoredCase("its last fragment", in4[2], want4[2])
	other4, _ := answer(beAddrs[0], vip, client, 0x5002)
	untouched("a later fragment of a reply whose first did not leave here", other4[1])
	stranger, _ := answer(beAddrs[0], vip, netip.MustParseAddr("198.18.1.9"), 0x5003)
	untouched("a first fragment of a flow not recorded here", stranger[0])
	untouched("and its later fragment", stranger[1])
	in6, want6 := answer(beAddrs6[0], vip6, client6, 0x70005004)
	restoredCase("ipv6 reply, first fragment", in6[0], want6[0])
	restoredCase("its second fragment", in6[1], want6[1])
	restoredCase("its last fragment", in6[2], want6[2])
	other6, _ := answer(beAddrs6[0], vip6, client6, 0x70005005)
	untouched("an ipv6 later fragment of a reply whose first did not leave here", other6[2])

	runHostFixtures(t, b, b.objs.TcEgress, cases)

	st, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []VIPKey{{Addr: vip, Port: 53, Proto: 17}, {Addr: vip6, Port: 53, Proto: 17}} {
		if got := st.Return[k].Packets; got != 3 {
			t.Errorf("return traffic of %s: %d packets, want the 3 fragments", k, got)
		}
	}
}
