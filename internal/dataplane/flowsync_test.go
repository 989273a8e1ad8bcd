package dataplane

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The scan hashes map keys as they come from the kernel; it must agree with Flow.Hash,
// which agrees with bpf/hash.h (TestXDPLBFixtures sends flows where Flow.Hash says).
func TestKeyHashIsFlowHash(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		var f Flow
		if r.IntN(2) == 0 {
			var s, d [4]byte
			for i := range 4 {
				s[i], d[i] = byte(r.Uint32()), byte(r.Uint32())
			}
			f = Flow{Src: netip.AddrFrom4(s), Dst: netip.AddrFrom4(d)}
		} else {
			var s, d [16]byte
			for i := range 16 {
				s[i], d[i] = byte(r.Uint32()), byte(r.Uint32())
			}
			f = Flow{Src: netip.AddrFrom16(s), Dst: netip.AddrFrom16(d)}
		}
		f.SrcPort, f.DstPort, f.Proto = uint16(r.Uint32()), uint16(r.Uint32()), []uint8{6, 17}[r.IntN(2)]
		seed := r.Uint32()
		var got uint32
		var back Flow
		if f.Src.Is4() {
			k := keyV4(f)
			got, back = hashKeyV4(&k, seed), flowFromKeyV4(&k)
		} else {
			k := keyV6(f)
			got, back = hashKeyV6(&k, seed), flowFromKeyV6(&k)
		}
		if want := f.Hash(seed); got != want {
			t.Fatalf("%+v seed %#x: key hash %#x, Flow.Hash %#x", f, seed, got, want)
		}
		if back != f {
			t.Fatalf("key round trip: %+v became %+v", f, back)
		}
	}
}

// addrCmp lets cmp compare netip.Addr values (unexported fields).
var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// sendFlows sends one ACK of each flow (recording it in the flow table) and returns the
// backend each went to.
func sendFlows(t *testing.T, lb *LB, flows []Flow) map[Flow]netip.Addr {
	t.Helper()
	out := map[Flow]netip.Addr{}
	for _, f := range flows {
		out[f] = sentTo(t, lb, f, false)
	}
	return out
}

// sentTo sends one packet of f (a SYN, or an ACK) and returns the outer destination.
func sentTo(t *testing.T, lb *LB, f Flow, syn bool) netip.Addr {
	t.Helper()
	ret, out := run(t, lb.objs.XdpLb, packet(t, f.Src, f.Dst, tcp(f.SrcPort, f.DstPort, syn, !syn)))
	if ret != xdpTX {
		t.Fatalf("%+v: verdict %d, want XDP_TX", f, ret)
	}
	if out[12] == 0x86 && out[13] == 0xdd {
		return netip.AddrFrom16([16]byte(out[14+24 : 14+40]))
	}
	return netip.AddrFrom4([4]byte(out[14+16 : 14+20]))
}

func flowsTo(dst netip.Addr, src netip.Addr, first uint16, n int) []Flow {
	var out []Flow
	for i := range n {
		out = append(out, Flow{Src: src, Dst: dst, SrcPort: first + uint16(i), DstPort: 80, Proto: 6})
	}
	return out
}

func scan(t *testing.T, s *FlowScanner) (map[Flow]SharedFlow, ScanStats) {
	t.Helper()
	got := map[Flow]SharedFlow{}
	st, err := s.AtRisk(func(f SharedFlow) {
		if _, dup := got[f.Flow]; dup {
			t.Errorf("flow %+v visited twice", f.Flow)
		}
		got[f.Flow] = f
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, st
}

// A flow is at risk exactly when the ring no longer picks the backend it is on; flows on a
// backend that is down are never shared.
func TestAtRiskIsWhatTheRingNoLongerPicks(t *testing.T) {
	lb := mustLoadLB(t)
	bes, bes6 := testBackends(beAddrs), testBackends(beAddrs6)
	old := VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)}
	old6 := VIP{Key: web6Key, Backends: bes6, Ring: roundRobinRing(ringLen, 3)}
	mustApply(t, lb, old, old6)
	flows := append(flowsTo(vip, client, 50000, 60), flowsTo(vip6, client6, 50000, 30)...)
	on := sendFlows(t, lb, flows)
	s := lb.NewFlowScanner()
	if got, st := scan(t, s); len(got) != 0 || st.Scanned != len(flows) || st.AtRisk != 0 {
		t.Fatalf("before any change: %d at risk, stats %+v", len(got), st)
	}

	// a new ring moves some slots to other backends, as adding or reweighting one does
	moved := roundRobinRing(ringLen, 3)
	for i := range moved {
		if i%3 == 0 {
			moved[i] = (moved[i] + 1) % 3
		}
	}
	now, now6 := VIP{Key: webKey, Backends: bes, Ring: moved}, VIP{Key: web6Key, Backends: bes6, Ring: moved}
	mustApply(t, lb, now, now6)
	want := map[Flow]SharedFlow{}
	for _, f := range flows {
		v := now
		if f.Src.Is6() {
			v = now6
		}
		if owner(v, f).Addr != on[f] {
			want[f] = SharedFlow{Flow: f, VIP: v.Key, Backend: on[f]}
		}
	}
	if len(want) == 0 || len(want) == len(flows) {
		t.Fatalf("the new ring moves %d of %d flows: the test needs some of each", len(want), len(flows))
	}
	got, st := scan(t, s)
	if d := cmp.Diff(want, got, addrCmp); d != "" {
		t.Fatalf("at risk (-want +got):\n%s", d)
	}
	if st.AtRisk != len(want) || st.Scanned != len(flows) || st.Down != 0 || st.Stale != 0 {
		t.Errorf("stats %+v, want %d at risk of %d", st, len(want), len(flows))
	}

	// backend 0 goes down: its flows are not shared (they are lost anyway), the rest are
	down := slices.Clone(bes)
	down[0].Down = true
	mustApply(t, lb, VIP{Key: webKey, Backends: down, Ring: moved}, now6)
	got, st = scan(t, s)
	for f, sf := range want {
		if f.Src.Is4() && sf.Backend == beAddrs[0] {
			delete(want, f)
		}
	}
	if d := cmp.Diff(want, got, addrCmp); d != "" {
		t.Fatalf("at risk with %s down (-want +got):\n%s", beAddrs[0], d)
	}
	if st.Down == 0 {
		t.Errorf("stats %+v: no flow counted on a down backend", st)
	}

	// the VIP is removed: its flows' backends are gone, nothing of it is shared
	mustApply(t, lb, now6)
	got, st = scan(t, s)
	for f := range got {
		if f.Src.Is4() {
			t.Fatalf("flow %+v of a removed VIP shared", f)
		}
	}
	if st.Stale != 60 {
		t.Errorf("stats %+v, want the removed VIP's 60 flows stale", st)
	}
}

// adopt puts adopted flows and turns the lookup on.
func adopt(t *testing.T, lb *LB, flows ...SharedFlow) {
	t.Helper()
	un, err := lb.PutAdopted(flows)
	if err != nil || len(un) != 0 {
		t.Fatalf("put adopted: %v, unresolved %v", err, un)
	}
	if err := lb.SetAdoptedCounts(len(flows), len(flows)); err != nil {
		t.Fatal(err)
	}
}

func TestAdoptedFlowKeepsItsBackend(t *testing.T) {
	lb := mustLoadLB(t)
	bes := testBackends(beAddrs)
	v := VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)}
	v6 := VIP{Key: web6Key, Backends: testBackends(beAddrs6), Ring: roundRobinRing(ringLen, 3)}
	mustApply(t, lb, v, v6)
	// flows whose ring owner is not backend 2: another node recorded them on backend 2
	var flows []Flow
	for _, f := range flowsTo(vip, client, 51000, 40) {
		if owner(v, f).Addr != beAddrs[2] {
			flows = append(flows, f)
		}
	}
	f, syn, downF, unused := flows[0], flows[1], flows[2], flows[3]
	f6 := Flow{Src: client6, Dst: vip6, SrcPort: 51000, DstPort: 80, Proto: 6}
	other6 := beAddrs6[0]
	if owner(v6, f6).Addr == other6 {
		other6 = beAddrs6[1]
	}
	adopt(t, lb, SharedFlow{f, webKey, beAddrs[2]}, SharedFlow{syn, webKey, beAddrs[2]},
		SharedFlow{downF, webKey, beAddrs[1]}, SharedFlow{f6, web6Key, other6})

	if got := sentTo(t, lb, f, false); got != beAddrs[2] {
		t.Fatalf("adopted flow went to %s, want %s (the ring says %s)", got, beAddrs[2], owner(v, f).Addr)
	}
	if got := sentTo(t, lb, f6, false); got != other6 {
		t.Fatalf("adopted ipv6 flow went to %s, want %s", got, other6)
	}
	// a SYN is a new connection: the ring decides
	if got := sentTo(t, lb, syn, true); got != owner(v, syn).Addr {
		t.Errorf("SYN of an adopted tuple went to %s, want the ring's %s", got, owner(v, syn).Addr)
	}
	// the flow entered this node's flow table: it stays when the adopted entry goes
	if err := lb.DeleteAdopted([]Flow{f, f6}); err != nil {
		t.Fatal(err)
	}
	if got := sentTo(t, lb, f, false); got != beAddrs[2] {
		t.Errorf("after its adopted entry went, the flow moved to %s", got)
	}
	// an adopted flow whose backend is down here: the ring decides
	down := slices.Clone(bes)
	down[1].Down = true
	mustApply(t, lb, VIP{Key: webKey, Backends: down, Ring: v.Ring}, v6)
	if got := sentTo(t, lb, downF, false); got != owner(v, downF).Addr {
		t.Errorf("adopted flow on a down backend went to %s, want the ring's %s", got, owner(v, downF).Addr)
	}
	// the counts say a family holds none: the lookup is skipped
	adopt(t, lb, SharedFlow{unused, webKey, beAddrs[2]})
	if err := lb.SetAdoptedCounts(0, 0); err != nil {
		t.Fatal(err)
	}
	if got := sentTo(t, lb, unused, false); got != owner(v, unused).Addr {
		t.Errorf("with the lookup off the flow went to %s, want the ring's %s", got, owner(v, unused).Addr)
	}
	ev, err := lb.FlowSyncEvents()
	if err != nil {
		t.Fatal(err)
	}
	if ev["hit"] != 2 || ev["stale"] != 1 {
		t.Errorf("flow sync events %v: want 2 hits and 1 stale", ev)
	}
}

// An adopted entry can only send a flow to a backend of the flow's own VIP, whatever the
// map holds; and flows whose VIP or backend this node does not serve are not written.
func TestAdoptedEntriesAreChecked(t *testing.T) {
	lb := mustLoadLB(t)
	v := VIP{Key: webKey, Backends: testBackends(beAddrs[:2]), Ring: roundRobinRing(ringLen, 2)}
	d := VIP{Key: dnsKey, Backends: testBackends(beAddrs[2:]), Ring: roundRobinRing(ringLen, 1)}
	mustApply(t, lb, v, d)
	f := Flow{Src: client, Dst: vip, SrcPort: 52000, DstPort: 80, Proto: 6}
	un, err := lb.PutAdopted([]SharedFlow{
		{f, webKey, beAddrs[2]}, // not a backend of web here
		{f, VIPKey{Addr: netip.MustParseAddr("198.18.0.77"), Port: 80, Proto: 6}, beAddrs[0]},
		{Flow{Src: client, Dst: vip6}, webKey, beAddrs[0]}, // families differ
	})
	if err != nil || len(un) != 3 {
		t.Fatalf("unresolved %v (err %v), want all 3", un, err)
	}
	// written by hand: dns's backend for a web flow
	lb.mu.Lock()
	other := lb.pairs[pairKey{dnsKey, beAddrs[2]}]
	lb.mu.Unlock()
	if err := lb.objs.AdoptedV4.Put(keyV4(f), lbFlowVal{BackendId: other.id, Gen: other.gen}); err != nil {
		t.Fatal(err)
	}
	if err := lb.SetAdoptedCounts(1, 0); err != nil {
		t.Fatal(err)
	}
	if got := sentTo(t, lb, f, false); got != owner(v, f).Addr {
		t.Errorf("went to %s by another VIP's backend, want the ring's %s", got, owner(v, f).Addr)
	}
	if ev, err := lb.FlowSyncEvents(); err != nil || ev["stale"] != 1 || ev["hit"] != 0 {
		t.Errorf("flow sync events %v (%v): want 1 stale, no hit", ev, err)
	}
}

func TestReadAdoptedAfterRestart(t *testing.T) {
	lb := mustLoadLB(t)
	bes := testBackends(beAddrs)
	mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)})
	want := []SharedFlow{
		{Flow{Src: client, Dst: vip, SrcPort: 53000, DstPort: 80, Proto: 6}, webKey, beAddrs[0]},
		{Flow{Src: client, Dst: vip, SrcPort: 53001, DstPort: 80, Proto: 6}, webKey, beAddrs[2]},
	}
	adopt(t, lb, want...)
	got, err := lb.ReadAdopted()
	if err != nil {
		t.Fatal(err)
	}
	sortShared := func(s []SharedFlow) {
		slices.SortFunc(s, func(a, b SharedFlow) int { return int(a.Flow.SrcPort) - int(b.Flow.SrcPort) })
	}
	sortShared(got)
	if d := cmp.Diff(want, got, addrCmp); d != "" {
		t.Fatalf("read back (-want +got):\n%s", d)
	}
	// backend 2 leaves the VIP: its adopted flow is stale and goes
	mustApply(t, lb, VIP{Key: webKey, Backends: bes[:2], Ring: roundRobinRing(ringLen, 2)})
	got, err = lb.ReadAdopted()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != want[0] {
		t.Fatalf("after backend 2 left: %v, want %v", got, want[:1])
	}
	var k lbFlowKeyV4
	var v lbFlowVal
	left := 0
	for it := lb.objs.AdoptedV4.Iterate(); it.Next(&k, &v); {
		left++
	}
	if left != 1 {
		t.Errorf("%d entries left in adopted_v4, want 1", left)
	}
}
