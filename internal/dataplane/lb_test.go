package dataplane

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"
)

const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
	ringLen = 13 // small prime: slots are easy to reason about in a test
)

var (
	webKey   = VIPKey{Addr: vip, Port: 80, Proto: 6}
	dnsKey   = VIPKey{Addr: vip, Port: 53, Proto: 17}
	anyKey   = VIPKey{Addr: netip.MustParseAddr("198.18.0.20"), Port: 0, Proto: 6}
	web6Key  = VIPKey{Addr: vip6, Port: 80, Proto: 6}
	web46Key = VIPKey{Addr: netip.MustParseAddr("198.18.0.30"), Port: 80, Proto: 6}
	gueKey   = VIPKey{Addr: netip.MustParseAddr("198.18.0.40"), Port: 80, Proto: 6}
	gue6Key  = VIPKey{Addr: netip.MustParseAddr("2001:db8::40"), Port: 80, Proto: 6}
)

// fixtureLB is an LB with one VIP of each kind, every ring round-robin over its backends.
func fixtureLB(tb testing.TB) (*LB, map[VIPKey]VIP) {
	lb := mustLoadLB(tb)
	vips := map[VIPKey]VIP{}
	for _, v := range []VIP{
		{Key: webKey, Backends: testBackends(beAddrs), Ring: roundRobinRing(ringLen, 3)},
		{Key: dnsKey, Backends: testBackends(beAddrs), Ring: roundRobinRing(ringLen, 3)},
		{Key: anyKey, Backends: testBackends(beAddrs[:2]), Ring: roundRobinRing(ringLen, 2)},
		{Key: web6Key, Backends: testBackends(beAddrs6), Ring: roundRobinRing(ringLen, 3)},
		{Key: web46Key, Backends: testBackends(beAddrs6), Ring: roundRobinRing(ringLen, 3)},
		{Key: gueKey, Backends: testBackends(beAddrs), Ring: roundRobinRing(ringLen, 3), GUE: true},
		{Key: gue6Key, Backends: testBackends(beAddrs6), Ring: roundRobinRing(ringLen, 3), GUE: true},
	} {
		vips[v.Key] = v
	}
	all := make([]VIP, 0, len(vips))
	for _, v := range vips {
		all = append(all, v)
	}
	mustApply(tb, lb, all...)
	return lb, vips
}

// fixture is one packet through xdp_lb: the verdict, the exact bytes out and the one
// counter reason it must give.
type fixture struct {
	name       string
	in         []byte
	wantAction uint32
	want       []byte // nil: the output is not compared (drops)
	wantReason string
}

// runFixtures runs each fixture and checks its verdict, its output, and that exactly one
// verdict counter, the fixture's reason, grew by one.
func runFixtures(t *testing.T, lb *LB, cases []fixture) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, err := lb.Stats()
			if err != nil {
				t.Fatal(err)
			}
			ret, out := run(t, lb.objs.XdpLb, c.in)
			if ret != c.wantAction {
				t.Fatalf("verdict %d, want %d", ret, c.wantAction)
			}
			if c.want != nil {
				if d := diffPackets(c.want, out); d != "" {
					t.Fatal(d)
				}
			}
			after, err := lb.Stats()
			if err != nil {
				t.Fatal(err)
			}
			checkOneCounter(t, before.Verdicts, after.Verdicts, c.wantReason)
		})
	}
}

// checkOneCounter checks that of the counters, exactly one moved, by one packet: reason's
// ("" when none may move).
func checkOneCounter(t *testing.T, before, after map[string]Counter, reason string) {
	t.Helper()
	for name, a := range after {
		want := uint64(0)
		if name == reason {
			want = 1
		}
		if got := a.Packets - before[name].Packets; got != want {
			t.Errorf("counter %s grew by %d, want %d", name, got, want)
		}
	}
}

// owner is the backend the ring names for a flow.
func owner(v VIP, f Flow) Backend {
	return v.Backends[v.Ring[f.Slot(testSeed, uint32(len(v.Ring)))]]
}

func TestXDPLBFixtures(t *testing.T) {
	lb, vips := fixtureLB(t)

	var cases []fixture
	add := func(f fixture) { cases = append(cases, f) }

	encapCase := func(name string, key VIPKey, src netip.Addr, p l4) {
		in := packet(t, src, key.Addr, p)
		f := Flow{Src: src, Dst: key.Addr, SrcPort: p.sport, DstPort: p.dport, Proto: uint8(p.proto)}
		be := owner(vips[key], f)
		add(fixture{name: name, in: in, wantAction: xdpTX, wantReason: "tx",
			want: encapExpected(t, be, l3(in), src.Is4(), p.tos, p.vlan, f.Hash(testSeed), vips[key].GUE)})
	}
	passCase := func(name string, in []byte, reason string) {
		add(fixture{name: name, in: in, wantAction: xdpPass, want: in, wantReason: reason})
	}
	dropCase := func(name string, in []byte) {
		add(fixture{name: name, in: in, wantAction: xdpDrop, wantReason: "drop_malformed"})
	}

	encapCase("tcp syn to vip", webKey, client, tcp(40000, 80, true, false))
	encapCase("tcp ack to vip", webKey, client, tcp(40001, 80, false, true))
	for sport := uint16(41000); sport < 41006; sport++ { // several flows: several ring slots
		encapCase("tcp flow spread", webKey, client, tcp(sport, 80, true, false))
	}
	encapCase("udp to vip", dnsKey, client, udp(5353, 53))
	tos := tcp(40002, 80, true, false)
	tos.tos = 0xb8 // EF: DSCP carried to the outer header
	encapCase("tos copied to outer header", webKey, client, tos)
	encapCase("port-wildcard vip", anyKey, client, tcp(40003, 8443, true, false))
	tagged := tcp(40004, 80, true, false)
	tagged.vlan = 42
	encapCase("vlan tagged, tag kept", webKey, client, tagged)
	encapCase("ipv6 vip, 6in6", web6Key, client6, tcp(40005, 80, true, false))
	encapCase("ipv4 vip, ipv6 backend, 4in6", web46Key, client, tcp(40006, 80, true, false))
	for sport := uint16(40010); sport < 40013; sport++ {
		encapCase("gue over ipv4", gueKey, client, tcp(sport, 80, true, false))
		encapCase("gue over ipv6", gue6Key, client6, tcp(sport, 80, true, false))
	}

	passCase("tcp to non-vip address", packet(t, client, netip.MustParseAddr("198.18.0.99"), tcp(40000, 80, true, false)), "pass")
	passCase("vip address, wrong port", packet(t, client, vip, tcp(40000, 81, true, false)), "pass")
	passCase("vip address, wrong protocol", packet(t, client, vip, udp(40000, 80)), "pass")
	passCase("ipv6 non-vip", packet(t, client6, netip.MustParseAddr("2001:db8::99"), tcp(40000, 80, true, false)), "pass")
	icmp := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: client.AsSlice(), DstIP: lbAddr.AsSlice()},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)})
	passCase("icmp to the host", icmp, "pass")
	arp := serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: clientMAC, SourceProtAddress: client.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: vip.AsSlice()})
	passCase("arp for the vip", arp, "pass")
	frag := tcp(40000, 80, true, false)
	frag.flags = layers.IPv4MoreFragments
	encapCase("ipv4 first fragment to vip: balanced by its ports", webKey, client, frag)
	opts := tcp(40000, 80, true, false)
	opts.ipOptions = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	passCase("ipv4 options: left to the host", packet(t, client, vip, opts), "pass")

	full := packet(t, client, vip, tcp(40000, 80, true, false))
	dropCase("truncated vlan header", append(append([]byte{}, full[:12]...), 0x81, 0x00))
	dropCase("truncated ipv4 header", full[:14+10])
	dropCase("truncated tcp header", full[:14+20+10])
	lying := append([]byte{}, full...)
	lying[14+2], lying[14+3] = 0x05, 0xdc // total length 1500 in a short frame
	dropCase("ipv4 total length beyond the frame", lying)
	ihl := append([]byte{}, full...)
	ihl[14] = 0x44 // ihl 4: shorter than the minimum header
	dropCase("ipv4 ihl below 5", ihl)
	full6 := packet(t, client6, vip6, tcp(40000, 80, true, false))
	dropCase("truncated ipv6 header", full6[:14+30])

	if len(cases) < 15 {
		t.Fatalf("only %d fixtures", len(cases))
	}
	runFixtures(t, lb, cases)
}

// ackTo sends one ACK of the flow and returns the backend address it was encapsulated to.
func ackTo(t *testing.T, lb *LB, f Flow, syn bool) netip.Addr {
	t.Helper()
	ret, out := run(t, lb.objs.XdpLb, packet(t, f.Src, f.Dst, tcp(f.SrcPort, f.DstPort, syn, !syn)))
	if ret != xdpTX {
		t.Fatalf("verdict %d, want XDP_TX", ret)
	}
	return netip.AddrFrom4([4]byte(out[14+16 : 14+20])) // outer destination
}

func TestLRUKeepsFlowWhenRingChanges(t *testing.T) {
	lb := mustLoadLB(t)
	bes := testBackends(beAddrs)
	mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)})
	f := Flow{Src: client, Dst: vip, SrcPort: 43000, DstPort: 80, Proto: 6}
	first := ackTo(t, lb, f, false)
	if want := owner(VIP{Backends: bes, Ring: roundRobinRing(ringLen, 3)}, f).Addr; first != want {
		t.Fatalf("first packet to %s, ring names %s", first, want)
	}
	// a new ring that sends every slot elsewhere
	other := 0
	for i, b := range bes {
		if b.Addr != first {
			other = i
			break
		}
	}
	ring := make([]uint32, ringLen)
	for i := range ring {
		ring[i] = uint32(other)
	}
	mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: ring})
	if got := ackTo(t, lb, f, false); got != first {
		t.Fatalf("after the ring changed the flow moved from %s to %s", first, got)
	}
	if got := ackTo(t, lb, Flow{Src: client, Dst: vip, SrcPort: 43001, DstPort: 80, Proto: 6}, false); got != bes[other].Addr {
		t.Fatalf("new flow went to %s, new ring names %s", got, bes[other].Addr)
	}
	// a SYN is a new connection: the ring decides even for a known tuple
	if got := ackTo(t, lb, f, true); got != bes[other].Addr {
		t.Fatalf("SYN went to %s, ring names %s", got, bes[other].Addr)
	}
	st, _ := lb.Stats()
	if st.Events["lru_hit"] == 0 || st.Events["lru_miss"] == 0 || st.Events["syn"] == 0 {
		t.Fatalf("events %v: want hits, misses and a syn", st.Events)
	}
}

func TestDownBackendLosesFlowsDrainingKeepsThem(t *testing.T) {
	lb := mustLoadLB(t)
	bes := testBackends(beAddrs)
	mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)})

	// find a flow on backend 0 and one on backend 1
	flows := map[netip.Addr]Flow{}
	for sport := uint16(44000); len(flows) < 3 && sport < 45000; sport++ {
		f := Flow{Src: client, Dst: vip, SrcPort: sport, DstPort: 80, Proto: 6}
		be := ackTo(t, lb, f, false)
		if _, ok := flows[be]; !ok {
			flows[be] = f
		}
	}
	if len(flows) < 3 {
		t.Fatalf("flows reached only %d backends", len(flows))
	}
	// backend 0 drains (weight 0: out of the ring, still an entry), backend 1 is down
	drained, down := bes[0], bes[1]
	down.Down = true
	newRing := make([]uint32, ringLen)
	for i := range newRing {
		newRing[i] = 2
	}
	mustApply(t, lb, VIP{Key: webKey, Backends: []Backend{drained, down, bes[2]}, Ring: newRing})

	if got := ackTo(t, lb, flows[drained.Addr], false); got != drained.Addr {
		t.Errorf("established flow on a draining backend moved to %s", got)
	}
	if got := ackTo(t, lb, flows[down.Addr], false); got != bes[2].Addr {
		t.Errorf("flow on a down backend went to %s, want the ring's %s", got, bes[2].Addr)
	}
	st, _ := lb.Stats()
	if st.Events["lru_skip_down"] != 1 {
		t.Errorf("lru_skip_down = %d, want 1", st.Events["lru_skip_down"])
	}
	// a backend removed from the VIP: its id is freed and its flows do not follow a reuse
	mustApply(t, lb, VIP{Key: webKey, Backends: []Backend{bes[2]}, Ring: make([]uint32, ringLen)})
	if got := ackTo(t, lb, flows[drained.Addr], false); got != bes[2].Addr {
		t.Errorf("flow of a removed backend went to %s", got)
	}
}

func TestCountersPerVIPAndBackend(t *testing.T) {
	lb := mustLoadLB(t)
	bes := testBackends(beAddrs)
	v := VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)}
	mustApply(t, lb, v)
	want := map[netip.Addr]uint64{}
	var bytes uint64
	const n = 60
	for i := range n {
		f := Flow{Src: client, Dst: vip, SrcPort: uint16(46000 + i), DstPort: 80, Proto: 6}
		in := packet(t, f.Src, f.Dst, tcp(f.SrcPort, 80, true, false))
		bytes += uint64(len(in))
		run(t, lb.objs.XdpLb, in)
		want[owner(v, f).Addr]++
	}
	run(t, lb.objs.XdpLb, packet(t, client, lbAddr, tcp(1, 22, true, false)))
	st, err := lb.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got := st.VIPs[webKey]; got.Packets != n || got.Bytes != bytes {
		t.Errorf("vip counter %+v, want %d packets %d bytes", got, n, bytes)
	}
	for a, w := range want {
		if got := st.Backends[webKey][a].Packets; got != w {
			t.Errorf("backend %s: %d packets, want %d", a, got, w)
		}
	}
	if st.Verdicts["tx"].Packets != n || st.Verdicts["pass"].Packets != 1 {
		t.Errorf("verdicts %+v", st.Verdicts)
	}
}

func TestNoBackendAndTooBig(t *testing.T) {
	lb := mustLoadLB(t)
	mustApply(t, lb, VIP{Key: webKey, Backends: testBackends(beAddrs), Ring: roundRobinRing(ringLen, 3)})

	big := tcp(47000, 80, true, false)
	big.payload = make([]byte, 1600-40) // inner 1600 bytes: no room for the outer header
	if ret, _ := run(t, lb.objs.XdpLb, packet(t, client, vip, big)); ret != xdpDrop {
		t.Errorf("oversized packet: verdict %d, want drop", ret)
	}
	// a VIP whose ring is gone (as between removal steps) drops and counts
	if err := lb.objs.Rings.Delete(lb.vips[webKey].ringID); err != nil {
		t.Fatal(err)
	}
	if ret, _ := run(t, lb.objs.XdpLb, packet(t, client, vip, tcp(47001, 80, true, false))); ret != xdpDrop {
		t.Errorf("no ring: verdict %d, want drop", ret)
	}
	st, _ := lb.Stats()
	if st.Verdicts["drop_too_big"].Packets != 1 || st.Verdicts["drop_no_backend"].Packets != 1 {
		t.Errorf("verdicts %+v", st.Verdicts)
	}
}

func TestRingSwapResizes(t *testing.T) {
	lb := mustLoadLB(t)
	bes := testBackends(beAddrs)
	mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)})
	v := VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(17, 3)}
	mustApply(t, lb, v)
	ring, err := lb.Ring(webKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(ring) != 17 {
		t.Fatalf("ring has %d slots, want 17", len(ring))
	}
	for i, a := range ring {
		if a != bes[v.Ring[i]].Addr {
			t.Fatalf("slot %d holds %s, want %s", i, a, bes[v.Ring[i]].Addr)
		}
	}
	for sport := uint16(48000); sport < 48020; sport++ {
		f := Flow{Src: client, Dst: vip, SrcPort: sport, DstPort: 80, Proto: 6}
		if got := ackTo(t, lb, f, true); got != owner(v, f).Addr {
			t.Fatalf("flow %d to %s, resized ring names %s", sport, got, owner(v, f).Addr)
		}
	}
	// removing the VIP leaves its traffic to the host
	mustApply(t, lb)
	if ret, _ := run(t, lb.objs.XdpLb, packet(t, client, vip, tcp(48100, 80, true, false))); ret != xdpPass {
		t.Fatalf("removed VIP: verdict %d, want pass", ret)
	}
}

func TestNamesCoverEnumsAndMapsFitLimits(t *testing.T) {
	if len(reasonNames) != int(lbReasonREASON_MAX) {
		t.Errorf("%d reason names for %d reasons", len(reasonNames), lbReasonREASON_MAX)
	}
	if len(eventNames) != int(lbFlowEventEVENT_MAX) {
		t.Errorf("%d event names for %d events", len(eventNames), lbFlowEventEVENT_MAX)
	}
	if len(flowSyncEventNames) != int(lbFlowsyncEventFLOWSYNC_EVENT_MAX) {
		t.Errorf("%d flow sync event names for %d events", len(flowSyncEventNames), lbFlowsyncEventFLOWSYNC_EVENT_MAX)
	}
	if len(hostReasonNames) != int(backendhostReasonREASON_MAX) {
		t.Errorf("%d backend host reason names for %d reasons", len(hostReasonNames), backendhostReasonREASON_MAX)
	}
	// the limits come from enum lb_limit; the maps are sized by the macros it names
	lbSpec, err := loadLb()
	if err != nil {
		t.Fatal(err)
	}
	hostSpec, err := loadBackendhost()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		spec *ebpf.CollectionSpec
		m    string
		want int
	}{
		{lbSpec, "vips", MaxVIPs},
		{lbSpec, "vip_addrs", MaxVIPs},
		{lbSpec, "vip_stats", MaxVIPs},
		{lbSpec, "rings", 2 * MaxVIPs},
		{lbSpec, "backends", MaxBackends + 1},
		{lbSpec, "backend_stats", MaxBackends + 1},
		{lbSpec, "quic_servers", MaxBackends + 1},
		{lbSpec, "vip_filter", vipFilterWords},
		{lbSpec, "stats", int(lbReasonREASON_MAX)},
		{lbSpec, "frags_v4", maxFrags},
		{lbSpec, "frags_v6", maxFrags},
		{lbSpec, "adopted_v4", MaxAdoptedFlows},
		{lbSpec, "adopted_v6", MaxAdoptedFlows},
		{lbSpec, "flowsync_events", int(lbFlowsyncEventFLOWSYNC_EVENT_MAX)},
		{lbSpec, "adopted_filter", adoptedFilterWords},
		{hostSpec, "served_vips", MaxVIPs},
		{hostSpec, "misdelivered", MaxVIPs},
		{hostSpec, "lb_sources_v4", MaxLBSources},
		{hostSpec, "lb_sources_v6", MaxLBSources},
		{hostSpec, "be_stats", int(backendhostReasonREASON_MAX)},
		{hostSpec, "dsr_frags_v4", maxFrags},
		{hostSpec, "dsr_frags_v6", maxFrags},
		{hostSpec, "dsr_reply_frags_v4", maxFrags},
		{hostSpec, "dsr_reply_frags_v6", maxFrags},
	} {
		if got := int(c.spec.Maps[c.m].MaxEntries); got != c.want {
			t.Errorf("map %s holds %d, the limit says %d", c.m, got, c.want)
		}
	}
}

var _ = ebpf.MustPossibleCPU
