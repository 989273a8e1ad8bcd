package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

// Flow sync's part of the fuzz targets' promises (fuzz_test.go): on the LB, the adopted
// lookup on a flow-table miss; on a backend, the misdelivery counter.

// adoptForFuzz gives the fuzz LB adopted flows: for each VIP, a band of source ports around
// the seeds' (whose ACKs take the adopted path the first time they run), each on a backend
// its ring does not pick, and one entry that names another VIP's backend, which the data
// path must refuse. It returns a seed that meets that entry.
func adoptForFuzz(tb testing.TB, lb *LB, vips map[VIPKey]VIP) [][]byte {
	tb.Helper()
	var flows []SharedFlow
	for _, k := range []VIPKey{webKey, dnsKey, web6Key, web46Key, gueKey, gue6Key} {
		v := vips[k]
		src := client
		if k.Addr.Is6() {
			src = client6
		}
		for sport := uint16(40000); sport < 40064; sport++ {
			f := Flow{Src: src, Dst: k.Addr, SrcPort: sport, DstPort: k.Port, Proto: k.Proto}
			i := slices.IndexFunc(v.Backends, func(b Backend) bool { return b.Addr == owner(v, f).Addr })
			flows = append(flows, SharedFlow{Flow: f, VIP: k, Backend: v.Backends[(i+1)%len(v.Backends)].Addr})
		}
	}
	a, _, err := lb.OpenAdopted()
	if err != nil {
		tb.Fatal(err)
	}
	// the wrong entry: adopted on a web backend, then overwritten with dns's
	wrong := Flow{Src: client, Dst: vip, SrcPort: 40100, DstPort: 80, Proto: 6}
	flows = append(flows, SharedFlow{Flow: wrong, VIP: webKey, Backend: beAddrs[0]})
	if un, err := a.Put(flows); err != nil || len(un) != 0 {
		tb.Fatalf("adopt: %v, unresolved %v", err, un)
	}
	lb.mu.Lock()
	other := lb.pairs[pairKey{dnsKey, beAddrs[0]}]
	lb.mu.Unlock()
	if err := lb.objs.AdoptedV4.Put(keyV4(wrong), lbFlowVal{BackendId: other.id, Gen: other.gen}); err != nil {
		tb.Fatal(err)
	}
	return [][]byte{packet(tb, client, vip, tcp(wrong.SrcPort, wrong.DstPort, false, true))}
}

// checkFlowSyncEvents: the adopted lookup counted at most one event; none for a packet
// that never reached the flow path (passed, malformed, from a martian source, ICMP), and a
// hit only for a packet sent toward a backend (or answered as too big for the tunnel).
func checkFlowSyncEvents(lb *LB, before map[string]uint64, reason string) error {
	after, err := lb.FlowSyncEvents()
	if err != nil {
		return err
	}
	hit, stale := after["hit"]-before["hit"], after["stale"]-before["stale"]
	switch {
	case hit+stale > 1:
		return fmt.Errorf("flow sync events moved by %d hits and %d stale", hit, stale)
	case hit+stale == 1 && slices.Contains([]string{"pass", "pass_fragment", "drop_malformed", "drop_bad_source", "icmp_echo_reply"}, reason):
		return fmt.Errorf("adopted lookup for a packet counted as %s", reason)
	case hit == 1 && !slices.Contains([]string{"tx", "icmp_too_big", "drop_too_big", "drop_encap_failed"}, reason):
		return fmt.Errorf("adopted hit for a packet counted as %s", reason)
	}
	return nil
}

// tunnelled is the inner IP packet of a tunnelled frame (IPIP, or GUE to GUEPort), or nil.
func tunnelled(in []byte) (inner []byte, v6 bool) {
	fi, err := parseFrame(in)
	if err != nil {
		return nil, false
	}
	outer := ipPacket(fi.l3, fi.etype == 0x86dd)
	if outer == nil {
		return nil, false
	}
	next, rest := outer[9], outer[min(20, len(outer)):]
	if fi.etype == 0x86dd {
		next, rest = outer[6], outer[40:]
	}
	if next == 17 {
		if len(rest) < 8 {
			return nil, false
		}
		rest = rest[8:]
	}
	if len(rest) == 0 {
		return nil, false
	}
	v6 = rest[0]>>4 == 6
	return ipPacket(rest, v6), v6
}

// checkMisdelivered: the misdelivery counters moved by at most one packet, and only when the
// frame was decapsulated and its inner packet is TCP but not a SYN, under that packet's VIP.
// (Whether it moved depends on the sockets of the host the test runs on: none is expected
// for these addresses, but the promise is that a counted packet had none.)
func checkMisdelivered(b *BackendHost, before map[VIPKey]Counter, in []byte, decapped bool) error {
	after, err := b.Misdelivered()
	if err != nil {
		return err
	}
	var grew []VIPKey
	for k, c := range after {
		switch d := c.Packets - before[k].Packets; {
		case d == 1:
			grew = append(grew, k)
		case d != 0:
			return fmt.Errorf("misdelivered %s moved by %d", k, d)
		}
	}
	if len(grew) == 0 {
		return nil
	}
	if len(grew) > 1 || !decapped {
		return fmt.Errorf("misdelivery counted under %v (decapsulated: %v)", grew, decapped)
	}
	inner, v6 := tunnelled(in)
	if inner == nil {
		return fmt.Errorf("misdelivery counted for a frame with no inner packet")
	}
	dst, proto, l4 := netip.AddrFrom4([4]byte(inner[16:20])), inner[9], inner[20:]
	if v6 {
		dst, proto, l4 = netip.AddrFrom16([16]byte(inner[24:40])), inner[6], inner[40:]
	}
	if proto != 6 || len(l4) < 20 {
		return fmt.Errorf("misdelivery counted for protocol %d", proto)
	}
	if flags := l4[13]; flags&0x02 != 0 && flags&0x10 == 0 {
		return fmt.Errorf("misdelivery counted for a SYN")
	}
	if want := (VIPKey{Addr: dst, Port: binary.BigEndian.Uint16(l4[2:]), Proto: 6}); grew[0] != want {
		return fmt.Errorf("misdelivery counted under %s, the packet is for %s", grew[0], want)
	}
	return nil
}
