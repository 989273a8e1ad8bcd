package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

const testSeed = 0x6c62640a

var (
	lbMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	beMACs    = []net.HardwareAddr{{0x02, 0, 0, 0, 0, 0x11}, {0x02, 0, 0, 0, 0, 0x12}, {0x02, 0, 0, 0, 0, 0x13}}
	lbAddr    = netip.MustParseAddr("198.18.0.2")
	lbAddr6   = netip.MustParseAddr("2001:db8::2")
	client    = netip.MustParseAddr("198.18.0.1")
	client6   = netip.MustParseAddr("2001:db8::1")
	vip       = netip.MustParseAddr("198.18.0.10")
	vip6      = netip.MustParseAddr("2001:db8::10")
	beAddrs   = []netip.Addr{netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12"), netip.MustParseAddr("198.18.0.13")}
	beAddrs6  = []netip.Addr{netip.MustParseAddr("2001:db8::11"), netip.MustParseAddr("2001:db8::12"), netip.MustParseAddr("2001:db8::13")}
)

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipping: loading BPF programs needs root (CAP_BPF, CAP_NET_ADMIN); run `make test` as root")
	}
}

// mustLoadLB loads xdp_lb with private (unpinned) maps, for BPF_PROG_TEST_RUN.
func mustLoadLB(tb testing.TB) *LB {
	tb.Helper()
	requireRoot(tb)
	lb, err := loadLB(Config{HashSeed: testSeed, EncapSource: lbAddr, EncapSource6: lbAddr6, MTU: 1600, MAC: lbMAC})
	if err != nil {
		tb.Fatalf("load xdp_lb: %+v", err)
	}
	tb.Cleanup(func() { lb.Close() })
	return lb
}

func testBackends(addrs []netip.Addr) []Backend {
	out := make([]Backend, len(addrs))
	for i, a := range addrs {
		out[i] = Backend{Addr: a, DstMAC: beMACs[i%len(beMACs)], SrcMAC: lbMAC}
	}
	return out
}

// roundRobinRing is a ring of size slots naming backends 0..n-1 in turn: the data path
// test needs a known ring, not a balanced one.
func roundRobinRing(size, n int) []uint32 {
	r := make([]uint32, size)
	for i := range r {
		r[i] = uint32(i % n)
	}
	return r
}

func mustApply(tb testing.TB, lb *LB, vips ...VIP) {
	tb.Helper()
	if err := lb.Apply(vips); err != nil {
		tb.Fatalf("apply: %v", err)
	}
}

// run passes one packet through prog and returns the verdict and the packet after it.
func run(tb testing.TB, prog *ebpf.Program, in []byte) (uint32, []byte) {
	tb.Helper()
	out := make([]byte, len(in)+256)
	opts := &ebpf.RunOptions{Data: in, DataOut: out}
	ret, err := prog.Run(opts)
	if err != nil {
		tb.Fatalf("test run: %v", err)
	}
	return ret, opts.DataOut
}

type l4 struct {
	proto          layers.IPProtocol
	sport, dport   uint16
	syn, ack       bool
	payload        []byte
	tos            uint8
	flags          layers.IPv4Flag
	fragOff        uint16
	vlan           uint16 // 0: untagged
	srcMAC, dstMAC net.HardwareAddr
	ipOptions      []layers.IPv4Option
}

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

// packet builds Ethernet (+VLAN) / IP / TCP or UDP / payload from src to dst.
func packet(tb testing.TB, src, dst netip.Addr, p l4) []byte {
	tb.Helper()
	if p.srcMAC == nil {
		p.srcMAC = clientMAC
	}
	if p.dstMAC == nil {
		p.dstMAC = lbMAC
	}
	eth := &layers.Ethernet{SrcMAC: p.srcMAC, DstMAC: p.dstMAC, EthernetType: layers.EthernetTypeIPv4}
	if src.Is6() {
		eth.EthernetType = layers.EthernetTypeIPv6
	}
	var ls []gopacket.SerializableLayer
	ls = append(ls, eth)
	if p.vlan != 0 {
		vl := &layers.Dot1Q{VLANIdentifier: p.vlan, Type: eth.EthernetType}
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, vl)
	}
	var nl gopacket.NetworkLayer
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, TOS: p.tos, Protocol: p.proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
			Flags: p.flags, FragOffset: p.fragOff, Options: p.ipOptions, Id: 0x1234}
		nl = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, TrafficClass: p.tos, NextHeader: p.proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		nl = ip
		ls = append(ls, ip)
	}
	switch p.proto {
	case layers.IPProtocolTCP:
		t := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), SYN: p.syn, ACK: p.ack, Seq: 1000, Window: 512}
		if p.ack {
			t.Ack = 2000
		}
		_ = t.SetNetworkLayerForChecksum(nl)
		ls = append(ls, t)
	case layers.IPProtocolUDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		_ = u.SetNetworkLayerForChecksum(nl)
		ls = append(ls, u)
	}
	ls = append(ls, gopacket.Payload(p.payload))
	return serialize(tb, ls...)
}

// ipipExpected is what the LB must send for inner (an L3 packet): Ethernet toward the
// backend, an outer header from the LB to the backend, inner unchanged.
func ipipExpected(tb testing.TB, be Backend, inner []byte, innerV4 bool, tos uint8, vlan uint16, hash uint32) []byte {
	return encapExpected(tb, be, inner, innerV4, tos, vlan, hash, false)
}

// encapExpected is ipipExpected, or with gue the same inside UDP to GUEPort (source port
// from the flow hash, no checksum).
func encapExpected(tb testing.TB, be Backend, inner []byte, innerV4 bool, tos uint8, vlan uint16, hash uint32, gue bool) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: be.SrcMAC, DstMAC: be.DstMAC, EthernetType: layers.EthernetTypeIPv4}
	ls := []gopacket.SerializableLayer{eth}
	outerType := layers.EthernetTypeIPv4
	if be.Addr.Is6() {
		outerType = layers.EthernetTypeIPv6
	}
	eth.EthernetType = outerType
	if vlan != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: vlan, Type: outerType})
	}
	if be.Addr.Is4() {
		proto := layers.IPProtocolIPv4
		if gue {
			proto = layers.IPProtocolUDP
		}
		ls = append(ls, &layers.IPv4{Version: 4, IHL: 5, TOS: tos, Flags: layers.IPv4DontFragment, TTL: 64,
			Protocol: proto, SrcIP: lbAddr.AsSlice(), DstIP: be.Addr.AsSlice()})
	} else {
		next := layers.IPProtocolIPv6
		if innerV4 {
			next = layers.IPProtocolIPv4
		}
		if gue {
			next = layers.IPProtocolUDP
		}
		ls = append(ls, &layers.IPv6{Version: 6, TrafficClass: tos, FlowLabel: hash & 0xfffff, NextHeader: next,
			HopLimit: 64, SrcIP: lbAddr6.AsSlice(), DstIP: be.Addr.AsSlice()})
	}
	// the outer header covers the inner packet; Ethernet padding of a short frame (any
	// trailer that fits the MTU) trails behind the outer packet
	var n int
	if innerV4 {
		n = int(inner[2])<<8 | int(inner[3])
	} else {
		n = 40 + (int(inner[4])<<8 | int(inner[5]))
	}
	payload := inner[:n]
	if gue {
		udp := make([]byte, 8, 8+n)
		binary.BigEndian.PutUint16(udp[0:], 0xc000|uint16(hash&0x3fff))
		binary.BigEndian.PutUint16(udp[2:], GUEPort)
		binary.BigEndian.PutUint16(udp[4:], uint16(8+n))
		payload = append(udp, payload...)
	}
	ls = append(ls, gopacket.Payload(payload))
	return append(serialize(tb, ls...), inner[n:]...)
}

// trimmed cuts a frame built by packet to its L2 header and IP packet: gopacket pads short
// frames to 60 bytes, which the data path does not carry through a tunnel.
func trimmed(frame []byte) []byte {
	ip := l3(frame)
	l2 := len(frame) - len(ip)
	n := 40 + (int(ip[4])<<8 | int(ip[5]))
	if ip[0]>>4 == 4 {
		n = int(ip[2])<<8 | int(ip[3])
	}
	return frame[:l2+n]
}

// l3 strips the Ethernet (and VLAN) header of a frame built by packet.
func l3(frame []byte) []byte {
	if frame[12] == 0x81 && frame[13] == 0x00 {
		return frame[18:]
	}
	return frame[14:]
}

// diffPackets compares two frames and, when they differ, names the layers and fields.
func diffPackets(want, got []byte) string {
	if string(want) == string(got) {
		return ""
	}
	dec := func(b []byte) string {
		p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
		var sb strings.Builder
		for _, l := range p.Layers() {
			fmt.Fprintf(&sb, "%s\n", gopacket.LayerString(l))
		}
		return sb.String()
	}
	return fmt.Sprintf("bytes differ (-want +got):\n%s\nlayers (-want +got):\n%s", cmp.Diff(want, got), cmp.Diff(dec(want), dec(got)))
}

func tcp(sport, dport uint16, syn, ack bool) l4 {
	return l4{proto: layers.IPProtocolTCP, sport: sport, dport: dport, syn: syn, ack: ack, payload: []byte("GET / HTTP/1.1\r\n\r\n")}
}

func udp(sport, dport uint16) l4 {
	return l4{proto: layers.IPProtocolUDP, sport: sport, dport: dport, payload: []byte("ping")}
}

// ebpfRun is the run options for one frame, its output written to out.
func ebpfRun(in, out []byte) *ebpf.RunOptions {
	return &ebpf.RunOptions{Data: in, DataOut: out}
}
