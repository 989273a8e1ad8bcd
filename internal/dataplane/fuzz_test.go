package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// Fuzz targets over the data path: arbitrary frames through BPF_PROG_TEST_RUN, every output
// checked against what the programs promise. `make test` runs each for a few seconds
// (`make fuzz` for longer); plain `go test` runs the seed corpus.
//
// xdp_lb's promises, for any frame:
//   - exactly one verdict counter moves;
//   - XDP_PASS leaves the frame as it was;
//   - XDP_DROP is counted under a drop_* reason;
//   - XDP_TX is either a valid encapsulation (outer header lengths, checksum, TTL, from the
//     LB's address to a backend of the VIP the inner packet is for) whose inner packet is
//     the input's IP packet byte for byte, within the MTU (a trailer of the input may ride
//     behind the outer packet, within the MTU too); or an echo reply or a too-big
//     answer with right checksums, to a unicast sender, from the interface's MAC;
//   - the adopted-flow lookup (flow sync) counts at most one event, only for a packet that
//     reached the flow path, and a hit only for one sent or answered (fuzz_flowsync_test.go).

const fuzzMTU = 1600 // mustLoadLB's encapsulation MTU

// maxLinear is the most BPF_PROG_TEST_RUN puts in an XDP frame's linear buffer (a page less
// headroom and skb_shared_info); beyond it the rest goes to fragments. The kernel refuses
// to attach a program without xdp.frags (ours) where frames can have fragments, so real
// input never does, and the targets cut longer inputs to this size.
const maxLinear = 4096 - 256 - 320

func lbSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	add := func(b ...[]byte) { seeds = append(seeds, b...) }
	for _, k := range []VIPKey{webKey, web6Key, web46Key, gueKey, gue6Key} {
		src := client
		if k.Addr.Is6() {
			src = client6
		}
		add(packet(tb, src, k.Addr, tcp(40000, k.Port, true, false)), packet(tb, src, k.Addr, tcp(40001, k.Port, false, true)))
	}
	add(packet(tb, client, dnsKey.Addr, udp(5353, 53)), packet(tb, client, anyKey.Addr, tcp(40002, 8443, true, false)))
	tagged := tcp(40003, 80, false, true)
	tagged.vlan = 7
	add(packet(tb, client, vip, tagged))
	big := tcp(40004, 80, false, true)
	big.payload = make([]byte, fuzzMTU-40)
	big.flags = layers.IPv4DontFragment
	add(packet(tb, client, vip, big))
	big6 := tcp(40005, 80, false, true)
	big6.payload = make([]byte, fuzzMTU-60)
	add(packet(tb, client6, vip6, big6))
	add(echoFrame(tb, clientMAC, lbMAC, client, vip, false, 64), echoFrame(tb, clientMAC, lbMAC, client6, vip6, false, 64))
	add(packet(tb, client, netip.MustParseAddr("198.18.0.99"), tcp(1, 2, true, false)))
	for _, h := range []string{
		"020000000002020000000001080045000014123400004006dc80c6120001c612000a9c400050000003e80000000050020200814c0000",
		"0200000000020200000000010800450005dc123400004001d6bdc6120001c612000a0800f7f500070003",
		"020000000002020000000001080045000014123400004001dc85c6120001c612000a0800f7f500070003",
		"02000000000202000000000108004500001c123400004001dc7dc6120001c612000a0800adaf00070003",
		"02000000000202000000000108004500001c123400004001a291ffffffffc612000a0800f7f500070003",
		"ffffffffffff02000000000108004500001c123400004001dc7dc6120001c612000a0800f7f500070003",
	} {
		add(mustHex(tb, h))
	}
	v6gue := packet(tb, client6, gue6Key.Addr, tcp(40006, 80, true, false))
	v6gue[14] = 0x45
	add(v6gue)
	add(edgeLBSeeds(tb)...)
	return seeds
}

func FuzzXDPLB(f *testing.F) {
	lb, vips := fixtureLB(f)
	for _, s := range append(lbSeeds(f), adoptForFuzz(f, lb, vips)...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		in = in[:min(len(in), maxLinear)]
		if err := checkXDPLB(lb, vips, in); err != nil {
			t.Fatalf("%v\ninput (%d bytes): %x", err, len(in), in[:min(len(in), 128)])
		}
	})
}

// verdictCounts reads the per-reason packet counters alone (Stats reads every map).
func verdictCounts(lb *LB) (map[string]uint64, error) {
	out := make(map[string]uint64, len(reasonNames))
	for id, name := range reasonNames {
		c, err := sumCounters(lb.objs.Stats, uint32(id))
		if err != nil {
			return nil, err
		}
		out[name] = c.Packets
	}
	return out, nil
}

func checkXDPLB(lb *LB, vips map[VIPKey]VIP, in []byte) error {
	before, err := verdictCounts(lb)
	if err != nil {
		return err
	}
	eventsBefore, err := lb.FlowSyncEvents()
	if err != nil {
		return err
	}
	out := make([]byte, len(in)+256)
	opts := ebpfRun(in, out)
	ret, err := lb.objs.XdpLb.Run(opts)
	if err != nil {
		if len(in) < 14 { // the kernel refuses to run XDP on less than an Ethernet header
			return nil
		}
		return fmt.Errorf("test run: %w", err)
	}
	out = opts.DataOut
	after, err := verdictCounts(lb)
	if err != nil {
		return err
	}
	reason := ""
	for name, n := range after {
		switch d := n - before[name]; {
		case d == 0:
		case d == 1 && reason == "":
			reason = name
		default:
			return fmt.Errorf("counters moved: %v → %v", before, after)
		}
	}
	if reason == "" {
		return fmt.Errorf("verdict %d counted under no reason", ret)
	}
	if err := checkFlowSyncEvents(lb, eventsBefore, reason); err != nil {
		return err
	}
	switch ret {
	case xdpPass:
		if reason != "pass" && reason != "pass_fragment" {
			return fmt.Errorf("XDP_PASS counted as %s", reason)
		}
		if !bytes.Equal(in, out) {
			return fmt.Errorf("XDP_PASS changed the frame to %x", out)
		}
	case xdpDrop:
		if len(reason) < 5 || reason[:5] != "drop_" {
			return fmt.Errorf("XDP_DROP counted as %s", reason)
		}
	case xdpTX, 4 /* XDP_REDIRECT */ :
		switch reason {
		case "tx":
			return checkEncap(lb, vips, in, out)
		case "icmp_echo_reply":
			return checkEchoReply(in, out)
		case "icmp_too_big":
			return checkTooBig(in, out)
		}
		return fmt.Errorf("sent, counted as %s", reason)
	default:
		return fmt.Errorf("verdict %d (%s)", ret, reason)
	}
	return nil
}

// frame is what the checkers read of an Ethernet frame: MACs, the VLAN tag, and the L3.
type frame struct {
	dst, src net.HardwareAddr
	vlan     []byte // the 4 tag bytes (TPID, TCI), or nil
	etype    uint16
	l3       []byte
}

func parseFrame(b []byte) (frame, error) {
	if len(b) < 14 {
		return frame{}, fmt.Errorf("frame of %d bytes", len(b))
	}
	f := frame{dst: b[0:6], src: b[6:12], etype: binary.BigEndian.Uint16(b[12:])}
	l3 := b[14:]
	if f.etype == 0x8100 || f.etype == 0x88a8 {
		if len(b) < 18 {
			return frame{}, fmt.Errorf("vlan frame of %d bytes", len(b))
		}
		f.vlan = append([]byte{}, b[12:16]...)
		f.etype = binary.BigEndian.Uint16(b[16:])
		l3 = b[18:]
	}
	f.l3 = l3
	return f, nil
}

// ipPacket is the IP packet at the front of l3 by its own length field (nil when the
// header is cut short or claims more than there is).
func ipPacket(l3 []byte, v6 bool) []byte {
	if !v6 {
		if len(l3) < 20 {
			return nil
		}
		n := int(binary.BigEndian.Uint16(l3[2:]))
		if n < 20 || n > len(l3) {
			return nil
		}
		return l3[:n]
	}
	if len(l3) < 40 {
		return nil
	}
	n := 40 + int(binary.BigEndian.Uint16(l3[4:]))
	if n > len(l3) {
		return nil
	}
	return l3[:n]
}

// inetSum is the ones' complement sum of b (RFC 1071), folded to 16 bits.
func inetSum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// pseudoSum is the IPv4 or IPv6 pseudo-header sum for an upper-layer packet of n bytes.
func pseudoSum(src, dst []byte, proto uint8, n int) uint32 {
	var p []byte
	p = append(p, src...)
	p = append(p, dst...)
	if len(src) == 4 {
		p = append(p, 0, proto, byte(n>>8), byte(n))
	} else {
		p = append(p, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, proto)
	}
	return uint32(inetSum(p, 0))
}

func martian(a netip.Addr) bool {
	return !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() ||
		(a.Is4() && a.As4()[0] == 0) || (a.Is4() && a.As4()[0] >= 224)
}

// checkEncap: out is in's IP packet, whole and unchanged, inside a valid outer header from
// the LB to a backend of the VIP the packet is for (innerVIP says which that is).
func checkEncap(lb *LB, vips map[VIPKey]VIP, in, out []byte) error {
	fi, err := parseFrame(in)
	if err != nil {
		return err
	}
	innerV6 := fi.etype == 0x86dd
	inner := ipPacket(fi.l3, innerV6)
	if inner == nil || fi.etype != 0x0800 && !innerV6 {
		return fmt.Errorf("encapsulated a frame with no whole IP packet")
	}
	if innerV6 && inner[0]>>4 != 6 || !innerV6 && inner[0] != 0x45 {
		return fmt.Errorf("encapsulated an inner header of version %d (ethertype %#x)", inner[0]>>4, fi.etype)
	}
	key, err := innerVIP(lb, inner, innerV6)
	if err != nil {
		return err
	}
	v, ok := vips[key]
	if !ok {
		v, ok = vips[VIPKey{Addr: key.Addr, Port: 0, Proto: key.Proto}]
	}
	if !ok {
		return fmt.Errorf("encapsulated a packet for %s, no VIP", key)
	}

	fo, err := parseFrame(out)
	if err != nil {
		return err
	}
	if !bytes.Equal(fo.vlan, fi.vlan) {
		return fmt.Errorf("vlan tag %x became %x", fi.vlan, fo.vlan)
	}
	if !bytes.Equal(fo.src, lbMAC) {
		return fmt.Errorf("outer source MAC %s", fo.src)
	}
	// the outer packet by its own length; behind it only the input's trailer (Ethernet
	// padding) may ride, or nothing when it was cut, and the whole must fit the MTU
	if len(fo.l3) > fuzzMTU {
		return fmt.Errorf("outer packet and trailer of %d bytes on a %d MTU", len(fo.l3), fuzzMTU)
	}
	outerPkt := ipPacket(fo.l3, fo.etype == 0x86dd)
	if outerPkt == nil {
		return fmt.Errorf("outer packet not whole")
	}
	if tr := fo.l3[len(outerPkt):]; len(tr) > 0 && !bytes.Equal(tr, fi.l3[len(inner):]) {
		return fmt.Errorf("trailer behind the outer packet is %x, the input's was %x", fo.l3[len(outerPkt):], fi.l3[len(inner):])
	}
	var outerDst netip.Addr
	var payload []byte
	var next uint8
	switch fo.etype {
	case 0x0800:
		h := outerPkt
		if len(h) < 20 || h[0] != 0x45 || int(binary.BigEndian.Uint16(h[2:])) != len(h) || inetSum(h[:20], 0) != 0xffff ||
			h[8] != 64 || binary.BigEndian.Uint16(h[6:]) != 0x4000 || netip.AddrFrom4([4]byte(h[12:16])) != lbAddr {
			return fmt.Errorf("bad outer IPv4 header % x", h[:min2(20, len(h))])
		}
		outerDst, next, payload = netip.AddrFrom4([4]byte(h[16:20])), h[9], h[20:]
	case 0x86dd:
		h := outerPkt
		if len(h) < 40 || h[0]>>4 != 6 || 40+int(binary.BigEndian.Uint16(h[4:])) != len(h) || h[7] != 64 ||
			netip.AddrFrom16([16]byte(h[8:24])) != lbAddr6 {
			return fmt.Errorf("bad outer IPv6 header % x", h[:min2(40, len(h))])
		}
		outerDst, next, payload = netip.AddrFrom16([16]byte(h[24:40])), h[6], h[40:]
	default:
		return fmt.Errorf("outer ethertype %#x", fo.etype)
	}
	if next == 17 {
		if v.GUE == false || len(payload) < 8 || binary.BigEndian.Uint16(payload[2:]) != GUEPort ||
			int(binary.BigEndian.Uint16(payload[4:])) != len(payload) || binary.BigEndian.Uint16(payload[6:]) != 0 {
			return fmt.Errorf("bad GUE header % x", payload[:min2(8, len(payload))])
		}
		payload = payload[8:]
	} else if v.GUE || next != 4 && next != 41 || (next == 4) == innerV6 {
		return fmt.Errorf("outer next header %d for a v6=%v inner packet (gue %v)", next, innerV6, v.GUE)
	}
	if !bytes.Equal(payload, inner) {
		return fmt.Errorf("inner packet changed:\n in  %x\n out %x", inner, payload)
	}
	for i, b := range v.Backends {
		if b.Addr == outerDst && bytes.Equal(fo.dst, beMACs[i%len(beMACs)]) {
			return nil
		}
	}
	return fmt.Errorf("sent to %s (%s), no backend of %s", outerDst, fo.dst, v.Key)
}

func min2(a, b int) int { return min(a, b) }

// checkEchoReply: out answers the echo request in, to its (unicast) sender, from the
// interface's MAC, with right checksums and the request's identifier, sequence and data.
func checkEchoReply(in, out []byte) error {
	fi, err := parseFrame(in)
	if err != nil {
		return err
	}
	fo, err := parseFrame(out)
	if err != nil {
		return err
	}
	if !bytes.Equal(fo.dst, fi.src) || !bytes.Equal(fo.src, lbMAC) || fi.src[0]&1 == 1 {
		return fmt.Errorf("reply from %s to %s (request from %s)", fo.src, fo.dst, fi.src)
	}
	v6 := fi.etype == 0x86dd
	req, rep := ipPacket(fi.l3, v6), ipPacket(fo.l3, v6)
	if req == nil || rep == nil || len(req) != len(rep) || len(fo.l3) != len(rep) {
		return fmt.Errorf("reply of %d bytes to a request of %d", len(rep), len(req))
	}
	if !v6 {
		if req[0] != 0x45 || rep[0] != 0x45 || inetSum(rep[:20], 0) != 0xffff || rep[8] != 64 {
			return fmt.Errorf("bad reply header % x", rep[:20])
		}
		if !bytes.Equal(rep[12:16], req[16:20]) || !bytes.Equal(rep[16:20], req[12:16]) ||
			martian(netip.AddrFrom4([4]byte(req[12:16]))) {
			return fmt.Errorf("reply %x→%x to request %x→%x", rep[12:16], rep[16:20], req[12:16], req[16:20])
		}
		ic, ric := rep[20:], req[20:]
		if len(ic) < 8 || ic[0] != 0 || ic[1] != 0 || ric[0] != 8 || inetSum(ic, 0) != 0xffff || inetSum(ric, 0) != 0xffff {
			return fmt.Errorf("bad echo reply % x (request % x)", ic[:min2(8, len(ic))], ric[:min2(8, len(ric))])
		}
		if !bytes.Equal(ic[4:], ric[4:]) {
			return fmt.Errorf("reply data differs")
		}
		return nil
	}
	if req[0]>>4 != 6 || rep[0]>>4 != 6 || rep[6] != 58 || rep[7] != 64 {
		return fmt.Errorf("bad reply header % x", rep[:8])
	}
	if !bytes.Equal(rep[8:24], req[24:40]) || !bytes.Equal(rep[24:40], req[8:24]) ||
		martian(netip.AddrFrom16([16]byte(req[8:24]))) {
		return fmt.Errorf("reply addresses wrong")
	}
	ic, ric := rep[40:], req[40:]
	if len(ic) < 8 || ic[0] != 129 || ic[1] != 0 || ric[0] != 128 ||
		inetSum(ic, pseudoSum(rep[8:24], rep[24:40], 58, len(ic))) != 0xffff ||
		inetSum(ric, pseudoSum(req[8:24], req[24:40], 58, len(ric))) != 0xffff {
		return fmt.Errorf("bad echo6 reply % x", ic[:min2(8, len(ic))])
	}
	if !bytes.Equal(ic[4:], ric[4:]) {
		return fmt.Errorf("reply data differs")
	}
	return nil
}

// checkTooBig: out tells in's (unicast) sender, from the LB's address and the interface's
// MAC, the size that fits, quoting in's headers, with a right checksum.
func checkTooBig(in, out []byte) error {
	fi, err := parseFrame(in)
	if err != nil {
		return err
	}
	fo, err := parseFrame(out)
	if err != nil {
		return err
	}
	if !bytes.Equal(fo.dst, fi.src) || !bytes.Equal(fo.src, lbMAC) || fi.src[0]&1 == 1 {
		return fmt.Errorf("too-big from %s to %s (packet from %s)", fo.src, fo.dst, fi.src)
	}
	if fi.etype == 0x0800 {
		h := fo.l3
		if len(h) != 20+8+28 || h[0] != 0x45 || inetSum(h[:20], 0) != 0xffff || h[9] != 1 ||
			netip.AddrFrom4([4]byte(h[12:16])) != lbAddr || !bytes.Equal(h[16:20], fi.l3[12:16]) ||
			martian(netip.AddrFrom4([4]byte(fi.l3[12:16]))) {
			return fmt.Errorf("bad frag-needed header (%d bytes) % x", len(h), h[:min2(20, len(h))])
		}
		ic := h[20:]
		mtu := binary.BigEndian.Uint16(ic[6:])
		if ic[0] != 3 || ic[1] != 4 || inetSum(ic, 0) != 0xffff || mtu == 0 || mtu > fuzzMTU ||
			!bytes.Equal(ic[8:], fi.l3[:28]) {
			return fmt.Errorf("bad frag-needed % x", ic)
		}
		return nil
	}
	h := fo.l3
	if len(h) != 40+8+48 || h[0]>>4 != 6 || h[6] != 58 || netip.AddrFrom16([16]byte(h[8:24])) != lbAddr6 ||
		!bytes.Equal(h[24:40], fi.l3[8:24]) || martian(netip.AddrFrom16([16]byte(fi.l3[8:24]))) {
		return fmt.Errorf("bad packet-too-big header % x", h[:min2(40, len(h))])
	}
	ic := h[40:]
	mtu := binary.BigEndian.Uint32(ic[4:])
	if ic[0] != 2 || ic[1] != 0 || inetSum(ic, pseudoSum(h[8:24], h[24:40], 58, len(ic))) != 0xffff ||
		mtu == 0 || mtu > fuzzMTU || !bytes.Equal(ic[8:], fi.l3[:48]) {
		return fmt.Errorf("bad packet-too-big % x", ic[:8])
	}
	return nil
}

// The backend's promises, for any frame: xdp_decap passes it untouched and counts nothing,
// or drops it under exactly one of decap_malformed, refused_source, refused_vip, or
// decapsulates it (decap, and nothing else) when it came from an LB source for a served
// VIP: out is then the inner packet with its destination rewritten to this host and its
// checksums still right; a misdelivery is counted at most once, only for a decapsulated
// TCP packet that is not a SYN, under its VIP (fuzz_flowsync_test.go). tc_egress never drops, and changes at most a recorded flow's
// source address and port (and the checksums, still right) back to a VIP.

const decapSelf4 = 1 // index into beAddrs of local_v4 in the backend fuzz target

func backendSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, gue := range []bool{false, true} {
		seeds = append(seeds,
			encapsulated(tb, beAddrs[0], l3(packet(tb, client, vip, tcp(40000, 80, true, false))), true, gue),
			encapsulated(tb, beAddrs6[0], l3(packet(tb, client6, vip6, udp(40001, 53))), false, gue),
			encapsulated(tb, beAddrs6[0], l3(packet(tb, client, vip, tcp(40002, 80, false, true))), true, gue))
	}
	seeds = append(seeds, edgeBackendSeeds(tb)...)
	return append(seeds,
		packet(tb, beAddrs[0], client, tcp(80, 40000, false, true)),
		packet(tb, beAddrs6[0], client6, udp(53, 40001)),
		packet(tb, beAddrs[decapSelf4], client, tcp(80, 40002, false, true)),
		packet(tb, client, beAddrs[0], udp(1234, GUEPort)))
}

func FuzzBackend(f *testing.F) {
	b := mustLoadBackendHost(f, beAddrs[decapSelf4], netip.Addr{})
	for _, s := range backendSeeds(f) {
		f.Add(s)
		// record the seeds' flows, so that replies find them whatever order inputs come in
		out := make([]byte, len(s)+64)
		if _, err := b.objs.XdpDecap.Run(ebpfRun(s, out)); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		in = in[:min(len(in), maxLinear)]
		if err := checkDecap(b, in); err != nil {
			t.Fatalf("xdp_decap: %v\ninput (%d bytes): %x", err, len(in), in[:min(len(in), 128)])
		}
		if err := checkEgress(b, in); err != nil {
			t.Fatalf("tc_egress: %v\ninput (%d bytes): %x", err, len(in), in[:min(len(in), 128)])
		}
	})
}

func backendCounts(b *BackendHost) (map[string]uint64, error) {
	st, err := b.Stats()
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for n, c := range st.Counters {
		out[n] = c.Packets
	}
	return out, nil
}

func checkDecap(b *BackendHost, in []byte) error {
	before, err := backendCounts(b)
	if err != nil {
		return err
	}
	misBefore, err := b.Misdelivered()
	if err != nil {
		return err
	}
	out := make([]byte, len(in)+64)
	opts := ebpfRun(in, out)
	ret, err := b.objs.XdpDecap.Run(opts)
	if err != nil {
		if len(in) < 14 {
			return nil
		}
		return fmt.Errorf("test run: %w", err)
	}
	out = opts.DataOut
	after, err := backendCounts(b)
	if err != nil {
		return err
	}
	var moved []string
	for n, c := range after {
		if d := c - before[n]; d != 0 {
			if d != 1 {
				return fmt.Errorf("counter %s moved by %d", n, d)
			}
			moved = append(moved, n)
		}
	}
	decapped := ret == xdpPass && slices.Equal(moved, []string{"decap"})
	if err := checkMisdelivered(b, misBefore, in, decapped); err != nil {
		return err
	}
	switch {
	case ret == xdpDrop:
		if len(moved) != 1 || !slices.Contains([]string{"decap_malformed", "refused_source", "refused_vip", "refused_fragment"}, moved[0]) {
			return fmt.Errorf("drop counted as %v", moved)
		}
		return nil
	case ret != xdpPass:
		return fmt.Errorf("verdict %d", ret)
	case len(moved) == 0:
		if !bytes.Equal(in, out) {
			return fmt.Errorf("uncounted pass changed the frame to %x", out)
		}
		return nil
	case len(moved) != 1 || !slices.Contains([]string{"decap", "decap_fragment", "decap_icmp_error"}, moved[0]):
		return fmt.Errorf("pass counted as %v", moved)
	}
	return checkDecapOutput(b, moved[0], in, out)
}

// checkDecapOutput: in was a tunnelled packet from an LB source for a served VIP, and out
// is its inner packet, addressed to this host, checksums right (reason: what decap counted
// it as; an edge packet's rewrite is checkDecapEdge's).
func checkDecapOutput(b *BackendHost, reason string, in, out []byte) error {
	fi, err := parseFrame(in)
	if err != nil {
		return err
	}
	outerV6 := fi.etype == 0x86dd
	outer := ipPacket(fi.l3, outerV6)
	if outer == nil {
		return fmt.Errorf("decapsulated a frame whose outer packet is not whole")
	}
	var src, self netip.Addr
	var next uint8
	var rest []byte
	if outerV6 {
		src, self, next, rest = netip.AddrFrom16([16]byte(outer[8:24])), netip.AddrFrom16([16]byte(outer[24:40])), outer[6], outer[40:]
	} else {
		if outer[0] != 0x45 {
			return fmt.Errorf("decapsulated an outer header % x", outer[:1])
		}
		src, self, next, rest = netip.AddrFrom4([4]byte(outer[12:16])), netip.AddrFrom4([4]byte(outer[16:20])), outer[9], outer[20:]
	}
	if !slices.ContainsFunc(testLBSources, func(p netip.Prefix) bool { return p.Contains(src) }) {
		return fmt.Errorf("decapsulated a packet from %s", src)
	}
	if next == 17 {
		if len(rest) < 8 || binary.BigEndian.Uint16(rest[2:]) != GUEPort {
			return fmt.Errorf("decapsulated UDP that is not GUE")
		}
		rest = rest[8:]
	}
	if len(rest) == 0 {
		return fmt.Errorf("no inner packet")
	}
	innerV6 := rest[0]>>4 == 6
	if next == 4 && innerV6 || next == 41 && !innerV6 {
		return fmt.Errorf("outer next header %d, inner version %d", next, rest[0]>>4)
	}
	inner := ipPacket(rest, innerV6)
	if inner == nil {
		return fmt.Errorf("inner packet not whole")
	}
	fo, err := parseFrame(out)
	if err != nil {
		return err
	}
	if !bytes.Equal(fo.dst, fi.dst) || !bytes.Equal(fo.src, fi.src) || !bytes.Equal(fo.vlan, fi.vlan) ||
		(fo.etype == 0x86dd) != innerV6 {
		return fmt.Errorf("L2 header changed: %x → %x", in[:14], out[:14])
	}
	got := ipPacket(fo.l3, innerV6)
	if got == nil || len(got) != len(inner) {
		return fmt.Errorf("output packet of %d bytes for an inner packet of %d", len(got), len(inner))
	}
	// the outer destination is this host's address, or for 4in6 the configured one
	if !innerV6 && outerV6 {
		self = beAddrs[decapSelf4]
	}
	if reason != "decap" {
		return checkDecapEdge(b, reason, inner, got, self, innerV6)
	}
	var vipAddr, to netip.Addr
	var proto uint8
	var l4, gotL4 []byte
	if innerV6 {
		vipAddr, proto, l4, gotL4 = netip.AddrFrom16([16]byte(inner[24:40])), inner[6], inner[40:], got[40:]
		to = netip.AddrFrom16([16]byte(got[24:40]))
		if to != self {
			return fmt.Errorf("inner destination %s, want this host's %s", to, self)
		}
	} else {
		if inner[0] != 0x45 {
			return fmt.Errorf("inner header % x", inner[:1])
		}
		vipAddr, proto, l4, gotL4 = netip.AddrFrom4([4]byte(inner[16:20])), inner[9], inner[20:], got[20:]
		to = netip.AddrFrom4([4]byte(got[16:20]))
		if to != self {
			return fmt.Errorf("inner destination %s, want this host's %s", to, self)
		}
		if inetSum(inner[:20], 0) == 0xffff && inetSum(got[:20], 0) != 0xffff {
			return fmt.Errorf("inner IPv4 checksum broken by the rewrite")
		}
	}
	if !slices.ContainsFunc(testServedVIPs, func(k VIPKey) bool { return k.Addr == vipAddr }) {
		return fmt.Errorf("decapsulated a packet for %s, not served", vipAddr)
	}
	if l4OK(inner, l4, proto, innerV6) && !l4OK(got, gotL4, proto, innerV6) {
		return fmt.Errorf("inner L4 checksum broken by the rewrite")
	}
	return nil
}

// l4OK: is the TCP or UDP checksum of the packet right (a zero UDP checksum on IPv4 is)?
func l4OK(ip, l4 []byte, proto uint8, v6 bool) bool {
	var ps uint32
	if v6 {
		ps = pseudoSum(ip[8:24], ip[24:40], proto, len(l4))
	} else {
		ps = pseudoSum(ip[12:16], ip[16:20], proto, len(l4))
		if proto == 17 && len(l4) >= 8 && l4[6] == 0 && l4[7] == 0 {
			return true
		}
	}
	return inetSum(l4, ps) == 0xffff
}

func checkEgress(b *BackendHost, in []byte) error {
	if len(in) < 14 {
		return nil
	}
	out := make([]byte, len(in)+64)
	opts := ebpfRun(in, out)
	ret, err := b.objs.TcEgress.Run(opts)
	if err != nil {
		// the kernel's skb test run refuses frames too short for the L3 header their
		// ethertype names; a real skb never is
		if errors.Is(err, unix.EINVAL) && len(in) < 14+40 {
			return nil
		}
		return fmt.Errorf("test run: %w", err)
	}
	out = opts.DataOut
	if ret != tcxNext {
		return fmt.Errorf("verdict %#x, want TCX_NEXT", ret)
	}
	if bytes.Equal(in, out) {
		return nil
	}
	if len(in) != len(out) {
		return fmt.Errorf("length changed %d → %d", len(in), len(out))
	}
	fi, err := parseFrame(in)
	if err != nil {
		return err
	}
	fo, _ := parseFrame(out)
	v6 := fi.etype == 0x86dd
	pi, po := ipPacket(fi.l3, v6), ipPacket(fo.l3, v6)
	if pi == nil || po == nil {
		return fmt.Errorf("rewrote a frame with no whole IP packet")
	}
	if fragmentOf(pi, v6) {
		return checkEgressFrag(b, pi, po, v6)
	}
	// what may change: the source address and port, and the checksums
	var srcOff, srcLen, l4Off int
	if v6 {
		srcOff, srcLen, l4Off = 8, 16, 40
	} else {
		srcOff, srcLen, l4Off = 12, 4, 20
	}
	proto := pi[9]
	if v6 {
		proto = pi[6]
	}
	csumOff := map[uint8]int{6: 16, 17: 6}[proto]
	if csumOff == 0 || len(pi) < l4Off+csumOff+2 {
		return fmt.Errorf("rewrote proto %d", proto)
	}
	allowed := map[int]bool{}
	for i := srcOff; i < srcOff+srcLen; i++ {
		allowed[i] = true
	}
	for _, i := range []int{l4Off, l4Off + 1, l4Off + csumOff, l4Off + csumOff + 1} {
		allowed[i] = true
	}
	if !v6 {
		allowed[10], allowed[11] = true, true
	}
	for i := range pi {
		if pi[i] != po[i] && !allowed[i] {
			return fmt.Errorf("byte %d of the IP packet changed", i)
		}
	}
	newSrc, _ := netip.AddrFromSlice(po[srcOff : srcOff+srcLen])
	if !slices.ContainsFunc(testServedVIPs, func(k VIPKey) bool { return k.Addr == newSrc }) {
		return fmt.Errorf("source rewritten to %s, no VIP", newSrc)
	}
	if !v6 && inetSum(pi[:20], 0) == 0xffff && inetSum(po[:20], 0) != 0xffff {
		return fmt.Errorf("IPv4 checksum broken")
	}
	if l4OK(pi, pi[l4Off:], proto, v6) && !l4OK(po, po[l4Off:], proto, v6) {
		return fmt.Errorf("L4 checksum broken")
	}
	return nil
}
