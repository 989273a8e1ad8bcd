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

// mustAdopted takes charge of lb's adopted-flow maps.
func mustAdopted(t *testing.T, lb *LB) *Adopted {
	t.Helper()
	a, _, err := lb.OpenAdopted()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// adopt puts adopted flows, all of which must resolve.
func adopt(t *testing.T, a *Adopted, flows ...SharedFlow) {
	t.Helper()
	if un, err := a.Put(flows); err != nil || len(un) != 0 {
		t.Fatalf("put adopted: %v, unresolved %v", err, un)
	}
}

func TestAdoptedFlowKeepsItsBackend(t *testing.T) {
	lb := mustLoadLB(t)
	a := mustAdopted(t, lb)
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
	f, syn, downF, noCount, noBit := flows[0], flows[1], flows[2], flows[3], flows[4]
	f6 := Flow{Src: client6, Dst: vip6, SrcPort: 51000, DstPort: 80, Proto: 6}
	other6 := beAddrs6[0]
	if owner(v6, f6).Addr == other6 {
		other6 = beAddrs6[1]
	}
	adopt(t, a, SharedFlow{f, webKey, beAddrs[2]}, SharedFlow{syn, webKey, beAddrs[2]},
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
	if err := a.Delete([]Flow{f, f6}); err != nil {
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
	// the guards: counts that say the family holds none, or a clear filter bit, skip the
	// lookup (written by hand here; Adopted keeps them true)
	adopt(t, a, SharedFlow{noCount, webKey, beAddrs[2]}, SharedFlow{noBit, webKey, beAddrs[2]})
	if err := lb.objs.FlowsyncCtl.Put(uint32(0), lbFlowsyncCtl{AdoptedV6: 1}); err != nil {
		t.Fatal(err)
	}
	if got := sentTo(t, lb, noCount, false); got != owner(v, noCount).Addr {
		t.Errorf("with no IPv4 count the flow went to %s, want the ring's %s", got, owner(v, noCount).Addr)
	}
	if err := lb.objs.FlowsyncCtl.Put(uint32(0), lbFlowsyncCtl{AdoptedV4: 9, AdoptedV6: 9}); err != nil {
		t.Fatal(err)
	}
	word := filterBit(lb, noBit) / 64
	if err := lb.objs.AdoptedFilter.Put(word, uint64(0)); err != nil {
		t.Fatal(err)
	}
	if got := sentTo(t, lb, noBit, false); got != owner(v, noBit).Addr {
		t.Errorf("with its filter bit clear the flow went to %s, want the ring's %s", got, owner(v, noBit).Addr)
	}
	ev, err := lb.FlowSyncEvents()
	if err != nil {
		t.Fatal(err)
	}
	if ev["hit"] != 2 || ev["stale"] != 1 {
		t.Errorf("flow sync events %v: want 2 hits and 1 stale", ev)
	}
}

func filterBit(lb *LB, f Flow) uint32 { return f.Hash(lb.cfg.HashSeed) >> adoptedFilterShift }

// An adopted entry can only send a flow to a backend of the flow's own VIP, whatever the
// map holds; and flows whose VIP or backend this node does not serve are not written.
func TestAdoptedEntriesAreChecked(t *testing.T) {
	lb := mustLoadLB(t)
	a := mustAdopted(t, lb)
	v := VIP{Key: webKey, Backends: testBackends(beAddrs[:2]), Ring: roundRobinRing(ringLen, 2)}
	d := VIP{Key: dnsKey, Backends: testBackends(beAddrs[2:]), Ring: roundRobinRing(ringLen, 1)}
	mustApply(t, lb, v, d)
	f := Flow{Src: client, Dst: vip, SrcPort: 52000, DstPort: 80, Proto: 6}
	un, err := a.Put([]SharedFlow{
		{f, webKey, beAddrs[2]}, // not a backend of web here
		{f, VIPKey{Addr: netip.MustParseAddr("198.18.0.77"), Port: 80, Proto: 6}, beAddrs[0]},
		{Flow{Src: client, Dst: vip6}, webKey, beAddrs[0]}, // families differ
	})
	if err != nil || len(un) != 3 {
		t.Fatalf("unresolved %v (err %v), want all 3", un, err)
	}
	if v4, v6 := a.Len(); v4+v6 != 0 {
		t.Fatalf("%d and %d adopted flows written", v4, v6)
	}
	// a flow adopted on a web backend, then its entry overwritten by hand with dns's
	adopt(t, a, SharedFlow{f, webKey, beAddrs[1]})
	lb.mu.Lock()
	other := lb.pairs[pairKey{dnsKey, beAddrs[2]}]
	lb.mu.Unlock()
	if err := lb.objs.AdoptedV4.Put(keyV4(f), lbFlowVal{BackendId: other.id, Gen: other.gen}); err != nil {
		t.Fatal(err)
	}
	if got := sentTo(t, lb, f, false); got != owner(v, f).Addr {
		t.Errorf("went to %s by another VIP's backend, want the ring's %s", got, owner(v, f).Addr)
	}
	if ev, err := lb.FlowSyncEvents(); err != nil || ev["stale"] != 1 || ev["hit"] != 0 {
		t.Errorf("flow sync events %v (%v): want 1 stale, no hit", ev, err)
	}
}

// checkAdoptedMaps: the filter in the data path is exactly the bits of the flows in the
// adopted maps, and the counts their sizes.
func checkAdoptedMaps(t *testing.T, lb *LB) {
	t.Helper()
	want := make([]uint64, adoptedFilterWords)
	var n4, n6 uint32
	var k4 lbFlowKeyV4
	var k6 lbFlowKeyV6
	var v lbFlowVal
	for it := lb.objs.AdoptedV4.Iterate(); it.Next(&k4, &v); {
		bit := hashKeyV4(&k4, lb.cfg.HashSeed) >> adoptedFilterShift
		want[bit/64] |= 1 << (bit % 64)
		n4++
	}
	for it := lb.objs.AdoptedV6.Iterate(); it.Next(&k6, &v); {
		bit := hashKeyV6(&k6, lb.cfg.HashSeed) >> adoptedFilterShift
		want[bit/64] |= 1 << (bit % 64)
		n6++
	}
	for w := range want {
		var got uint64
		if err := lb.objs.AdoptedFilter.Lookup(uint32(w), &got); err != nil {
			t.Fatal(err)
		}
		if got != want[w] {
			t.Fatalf("filter word %d is %#x, the adopted flows make it %#x", w, got, want[w])
		}
	}
	var ctl lbFlowsyncCtl
	if err := lb.objs.FlowsyncCtl.Lookup(uint32(0), &ctl); err != nil {
		t.Fatal(err)
	}
	if ctl.AdoptedV4 != n4 || ctl.AdoptedV6 != n6 {
		t.Fatalf("counts %+v, the maps hold %d and %d", ctl, n4, n6)
	}
}

// Whatever is put and deleted, the filter and the counts follow the maps; flows that share
// a filter bit keep it set until the last goes.
func TestAdoptedFilterFollowsTheMaps(t *testing.T) {
	lb := mustLoadLB(t)
	a := mustAdopted(t, lb)
	mustApply(t, lb, VIP{Key: webKey, Backends: testBackends(beAddrs), Ring: roundRobinRing(ringLen, 3)},
		VIP{Key: web6Key, Backends: testBackends(beAddrs6), Ring: roundRobinRing(ringLen, 3)})
	r := rand.New(rand.NewPCG(5, 6))
	var pool []SharedFlow
	for i := range 200 {
		pool = append(pool, SharedFlow{Flow{Src: client, Dst: vip, SrcPort: uint16(10000 + i), DstPort: 80, Proto: 6}, webKey, beAddrs[i%3]})
		pool = append(pool, SharedFlow{Flow{Src: client6, Dst: vip6, SrcPort: uint16(10000 + i), DstPort: 80, Proto: 6}, web6Key, beAddrs6[i%3]})
	}
	// two flows of one filter bit
	bits := map[uint32]Flow{}
	for i := 0; ; i++ {
		f := Flow{Src: client, Dst: vip, SrcPort: 20000 + uint16(i), DstPort: 80, Proto: 6}
		if g, ok := bits[filterBit(lb, f)]; ok {
			pool = append(pool, SharedFlow{g, webKey, beAddrs[0]}, SharedFlow{f, webKey, beAddrs[1]})
			break
		}
		bits[filterBit(lb, f)] = f
	}
	for range 30 {
		var put []SharedFlow
		var del []Flow
		for range 20 {
			put = append(put, pool[r.IntN(len(pool))])
			del = append(del, pool[r.IntN(len(pool))].Flow)
		}
		adopt(t, a, put...)
		checkAdoptedMaps(t, lb)
		if err := a.Delete(del); err != nil {
			t.Fatal(err)
		}
		checkAdoptedMaps(t, lb)
	}
	last := pool[len(pool)-2:]
	adopt(t, a, last...)
	if err := a.Delete([]Flow{last[0].Flow}); err != nil {
		t.Fatal(err)
	}
	checkAdoptedMaps(t, lb)
	if got := sentTo(t, lb, last[1].Flow, false); got != beAddrs[1] {
		t.Errorf("the flow that shares a filter bit with a deleted one went to %s, want %s", got, beAddrs[1])
	}
}

// A restarted lbd takes back what the pinned maps hold, drops what no longer resolves, and
// rebuilds the filter.
func TestOpenAdoptedAfterRestart(t *testing.T) {
	lb := mustLoadLB(t)
	a := mustAdopted(t, lb)
	bes := testBackends(beAddrs)
	mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)})
	want := []SharedFlow{
		{Flow{Src: client, Dst: vip, SrcPort: 53000, DstPort: 80, Proto: 6}, webKey, beAddrs[0]},
		{Flow{Src: client, Dst: vip, SrcPort: 53001, DstPort: 80, Proto: 6}, webKey, beAddrs[2]},
	}
	adopt(t, a, want...)
	// a stray filter bit a previous run left: the restart clears it
	if err := lb.objs.AdoptedFilter.Put(uint32(7), uint64(0xff)); err != nil {
		t.Fatal(err)
	}
	_, got, err := lb.OpenAdopted()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b SharedFlow) int { return int(a.Flow.SrcPort) - int(b.Flow.SrcPort) })
	if d := cmp.Diff(want, got, addrCmp); d != "" {
		t.Fatalf("read back (-want +got):\n%s", d)
	}
	checkAdoptedMaps(t, lb)
	// backend 2 leaves the VIP: its adopted flow is stale and goes
	mustApply(t, lb, VIP{Key: webKey, Backends: bes[:2], Ring: roundRobinRing(ringLen, 2)})
	_, got, err = lb.OpenAdopted()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != want[0] {
		t.Fatalf("after backend 2 left: %v, want %v", got, want[:1])
	}
	checkAdoptedMaps(t, lb)
}

// Across a restart: the adopted flows stay in the pinned maps and keep working; the scan
// judges nothing until an apply has told this lbd the rings (it cannot read them back).
func TestFlowSyncAcrossRestart(t *testing.T) {
	dir := mustBPFFS(t)
	v := VIP{Key: webKey, Backends: testBackends(beAddrs), Ring: roundRobinRing(ringLen, 3)}
	first := loadPinnedLB(t, dir, 0)
	mustApply(t, first, v)
	var f Flow
	for _, c := range flowsTo(vip, client, 54000, 10) {
		if owner(v, c).Addr != beAddrs[0] {
			f = c
			break
		}
	}
	sentTo(t, first, Flow{Src: client, Dst: vip, SrcPort: 54100, DstPort: 80, Proto: 6}, false)
	adopt(t, mustAdopted(t, first), SharedFlow{f, webKey, beAddrs[0]})
	first.Close()

	lb := loadPinnedLB(t, dir, 0)
	_, restored, err := lb.OpenAdopted()
	if err != nil || len(restored) != 1 || restored[0] != (SharedFlow{f, webKey, beAddrs[0]}) {
		t.Fatalf("restored %v (%v), want the one adopted flow", restored, err)
	}
	checkAdoptedMaps(t, lb)
	st, err := lb.NewFlowScanner().AtRisk(func(SharedFlow) { t.Errorf("a flow judged before the rings are known") })
	if err != nil || st.Unknown != 1 || st.Scanned != 1 {
		t.Errorf("scan before an apply: %+v (%v), want the one flow unknown", st, err)
	}
	mustApply(t, lb, v)
	if st, err := lb.NewFlowScanner().AtRisk(func(SharedFlow) {}); err != nil || st.Unknown != 0 {
		t.Errorf("scan after the apply: %+v (%v)", st, err)
	}
	if got := sentTo(t, lb, f, false); got != beAddrs[0] {
		t.Errorf("after a restart the adopted flow went to %s, want %s", got, beAddrs[0])
	}
}

// A flow whose entry is stale here (its backend went down) and that another node shared on a
// usable backend goes there, and its entry is rewritten to it.
func TestAdoptedFlowOverStaleEntry(t *testing.T) {
	lb := mustLoadLB(t)
	a := mustAdopted(t, lb)
	bes := testBackends(beAddrs)
	v := VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)}
	mustApply(t, lb, v)
	var f Flow
	for _, c := range flowsTo(vip, client, 56000, 20) {
		if owner(v, c).Addr == beAddrs[0] {
			f = c
			break
		}
	}
	if got := sentTo(t, lb, f, false); got != beAddrs[0] {
		t.Fatalf("first packet to %s, want %s", got, beAddrs[0])
	}
	down := slices.Clone(bes)
	down[0].Down = true
	mustApply(t, lb, VIP{Key: webKey, Backends: down, Ring: v.Ring})
	adopt(t, a, SharedFlow{f, webKey, beAddrs[2]})
	if got := sentTo(t, lb, f, false); got != beAddrs[2] {
		t.Fatalf("flow with a stale entry and an adopted one went to %s, want %s", got, beAddrs[2])
	}
	if err := a.Delete([]Flow{f}); err != nil {
		t.Fatal(err)
	}
	before, _ := lb.Stats()
	if got := sentTo(t, lb, f, false); got != beAddrs[2] {
		t.Errorf("after the adopted entry went, the flow went to %s, want %s (its entry rewritten)", got, beAddrs[2])
	}
	if after, _ := lb.Stats(); after.Events["lru_hit"] != before.Events["lru_hit"]+1 {
		t.Errorf("the rewritten entry was not a hit: events %v → %v", before.Events, after.Events)
	}
}
