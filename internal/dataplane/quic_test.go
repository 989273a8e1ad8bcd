package dataplane

import (
	"net/netip"
	"strconv"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// TestQUICConnectionIDRouting: on a VIP with QUIC, a short-header packet goes to the
// backend whose server id its connection id carries (pkg/quiccid's layout), from any
// client address and port; long headers, other layouts, unknown ids and a backend that is
// down go by the ring as before.
func TestQUICConnectionIDRouting(t *testing.T) {
	lb := mustLoadLB(t)
	key := VIPKey{Addr: netip.MustParseAddr("198.18.0.50"), Port: 443, Proto: 17}
	bes := testBackends(beAddrs)
	for i := range bes {
		bes[i].QUICServerID = uint16(i + 1)
	}
	v := VIP{Key: key, Backends: bes, Ring: roundRobinRing(ringLen, 3), QUIC: true}
	mustApply(t, lb, v)

	quic := func(sport uint16, payload []byte) ([]byte, Flow, l4) {
		p := l4{proto: layers.IPProtocolUDP, sport: sport, dport: 443, payload: payload}
		return packet(t, client, key.Addr, p), Flow{Src: client, Dst: key.Addr, SrcPort: sport, DstPort: 443, Proto: 17}, p
	}
	short := func(sid uint16) []byte { // short header, then a connection id in lbd's layout
		return append([]byte{0x43, 0x40 | 0x15, byte(sid >> 8), byte(sid), 1, 2, 3, 4, 5}, make([]byte, 20)...)
	}
	var cases []fixture
	routed := func(name string, in []byte, f Flow, to Backend) {
		cases = append(cases, fixture{name: name, in: in, wantAction: xdpTX, wantReason: "tx",
			want: encapExpected(t, to, l3(in), true, 0, 0, f.Hash(testSeed), false)})
	}
	for sport := uint16(50000); sport < 50006; sport++ { // any source port: server 2
		in, f, _ := quic(sport, short(2))
		routed("short header for server 2, port "+strconv.Itoa(int(sport)), in, f, bes[1])
	}
	for _, c := range []struct {
		name    string
		payload []byte
	}{
		{"long header (initial)", append([]byte{0xc3, 0, 0, 0, 1, 8}, short(2)[1:]...)},
		{"unknown server id", short(9)},
		{"another layout", append([]byte{0x43, 0x80, 0, 2}, make([]byte, 20)...)},
		{"too short for a connection id", []byte{0x43, 0x40, 0, 2, 1}},
	} {
		in, f, _ := quic(50100, c.payload)
		routed(c.name+": the ring", in, f, owner(v, f))
	}
	runFixtures(t, lb, cases)
	st, _ := lb.Stats()
	if st.Events["quic_cid"] != 6 {
		t.Errorf("quic_cid events %d, want 6", st.Events["quic_cid"])
	}

	// server 2 down: its connections go by the ring (and break, as TCP's would)
	down := v
	down.Backends = append([]Backend{}, bes...)
	down.Backends[1].Down = true
	mustApply(t, lb, down)
	in, f, _ := quic(50200, short(2))
	runFixtures(t, lb, []fixture{{name: "server 2 down: the ring", in: in, wantAction: xdpTX, wantReason: "tx",
		want: encapExpected(t, owner(v, f), l3(in), true, 0, 0, f.Hash(testSeed), false)}})
}
