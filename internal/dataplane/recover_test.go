package dataplane

import "testing"

// TestRestartReusesRingSlots: a restarted lbd reads each VIP's ring size from its meta (no
// CAP_SYS_ADMIN needed to open inner maps by id), so applying the same ring again swaps it
// into the same slot of rings instead of taking a new one and leaving the old behind.
func TestRestartReusesRingSlots(t *testing.T) {
	dir := mustBPFFS(t)
	bes := testBackends(beAddrs)
	first := loadPinnedLB(t, dir, 0)
	mustApply(t, first, VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)},
		VIP{Key: dnsKey, Backends: bes, Ring: roundRobinRing(17, 3)})
	before := map[VIPKey]vipState{webKey: first.vips[webKey], dnsKey: first.vips[dnsKey]}
	first.Close()

	lb := loadPinnedLB(t, dir, 0)
	for k, st := range before {
		if got := lb.vips[k]; got.id != st.id || got.ringID != st.ringID || got.ringSize != st.ringSize {
			t.Errorf("%s recovered as %+v, was %+v", k, got, st)
		}
	}
	mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)},
		VIP{Key: dnsKey, Backends: bes, Ring: roundRobinRing(17, 3)})
	for k, st := range before {
		if got := lb.vips[k].ringID; got != st.ringID {
			t.Errorf("%s: ring moved from slot %d to %d after a restart", k, st.ringID, got)
		}
	}
	var id uint32
	n := 0
	for it := lb.objs.Rings.Iterate(); it.Next(new(uint32), &id); {
		n++
	}
	if n != 2 {
		t.Errorf("rings holds %d inner maps, want 2 (one per VIP)", n)
	}
}
