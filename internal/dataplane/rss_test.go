package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestEncapSourcePrefix: with an encapsulation source prefix, each flow's outer source is
// picked inside it by the flow hash (so a backend's NIC spreads IPIP flows over its receive
// queues), the same for every packet of the flow; the rest of the packet is as before.
func TestEncapSourcePrefix(t *testing.T) {
	requireRoot(t)
	p4, p6 := netip.MustParsePrefix("198.18.128.0/24"), netip.MustParsePrefix("2001:db8:100::/120")
	lb, err := loadLB(Config{HashSeed: testSeed, EncapSource: lbAddr, EncapSource6: lbAddr6, MTU: 1600, MAC: lbMAC,
		EncapPrefix: p4, EncapPrefix6: p6})
	if err != nil {
		t.Fatalf("load xdp_lb: %+v", err)
	}
	defer lb.Close()
	vips := map[VIPKey]VIP{}
	for _, v := range []VIP{
		{Key: webKey, Backends: testBackends(beAddrs), Ring: roundRobinRing(ringLen, 3)},
		{Key: web6Key, Backends: testBackends(beAddrs6), Ring: roundRobinRing(ringLen, 3)},
		{Key: gueKey, Backends: testBackends(beAddrs), Ring: roundRobinRing(ringLen, 3), GUE: true},
	} {
		vips[v.Key] = v
	}
	mustApply(t, lb, vips[webKey], vips[web6Key], vips[gueKey])

	seen := map[VIPKey]map[netip.Addr]bool{}
	var cases []fixture
	for _, key := range []VIPKey{webKey, web6Key, gueKey} {
		seen[key] = map[netip.Addr]bool{}
		src, prefix := client, p4
		if key.Addr.Is6() {
			src, prefix = client6, p6
		}
		for sport := uint16(42000); sport < 42004; sport++ {
			for _, syn := range []bool{true, false} { // a flow's first packet and a later one
				p := tcp(sport, 80, syn, !syn)
				in := packet(t, src, key.Addr, p)
				f := Flow{Src: src, Dst: key.Addr, SrcPort: sport, DstPort: 80, Proto: 6}
				outer := EncapSource(prefix, f, testSeed)
				if !prefix.Contains(outer) {
					t.Fatalf("%s outside %s", outer, prefix)
				}
				seen[key][outer] = true
				want := encapExpected(t, owner(vips[key], f), l3(in), src.Is4(), 0, 0, f.Hash(testSeed), vips[key].GUE)
				setOuterSource(want, outer)
				cases = append(cases, fixture{name: key.String() + " flow " + outer.String(), in: in,
					wantAction: xdpTX, want: want, wantReason: "tx"})
			}
		}
		if len(seen[key]) < 2 {
			t.Errorf("%s: four flows got %d outer sources, want several", key, len(seen[key]))
		}
	}
	runFixtures(t, lb, cases)
}

// setOuterSource rewrites the outer source of an untagged encapsulated frame, with the IPv4
// header checksum that goes with it.
func setOuterSource(frame []byte, src netip.Addr) {
	ip := frame[14:]
	if src.Is4() {
		copy(ip[12:16], src.AsSlice())
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ipv4HeaderSum(ip[:20]))
		return
	}
	copy(ip[8:24], src.AsSlice())
}
