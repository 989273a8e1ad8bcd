package dataplane

import (
	"slices"
	"testing"
)

// Explain names the adopted flow a miss would use, and what the data path then does agrees.
func TestExplainAdoptedFlow(t *testing.T) {
	lb := mustLoadLB(t)
	a := mustAdopted(t, lb)
	bes := testBackends(beAddrs)
	v := VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)}
	mustApply(t, lb, v)
	var flows []Flow
	for _, f := range flowsTo(vip, client, 55000, 20) {
		if owner(v, f).Addr != beAddrs[2] {
			flows = append(flows, f)
		}
	}
	f, down := flows[0], flows[1]
	adopt(t, a, SharedFlow{f, webKey, beAddrs[2]}, SharedFlow{down, webKey, beAddrs[1]})

	ex := mustExplain(t, lb, f)
	if ex.Adopted == nil || ex.Adopted.Stale || !ex.ByAdopted || ex.Backend != beAddrs[2] {
		t.Fatalf("explain of an adopted flow: %+v (adopted %+v)", ex, ex.Adopted)
	}
	if got := sentTo(t, lb, f, false); got != ex.Backend {
		t.Fatalf("explain said %s, the packet went to %s", ex.Backend, got)
	}
	if ex := mustExplain(t, lb, f); !ex.ByEntry || ex.Backend != beAddrs[2] {
		t.Errorf("after its first packet the flow is in the table: %+v", ex)
	}
	// its backend goes down: the adopted entry is ignored, and explain says why
	off := slices.Clone(bes)
	off[1].Down = true
	mustApply(t, lb, VIP{Key: webKey, Backends: off, Ring: v.Ring})
	ex = mustExplain(t, lb, down)
	if ex.Adopted == nil || !ex.Adopted.Stale || ex.ByAdopted || ex.Backend != owner(v, down).Addr {
		t.Fatalf("explain of an adopted flow on a down backend: %+v (adopted %+v)", ex, ex.Adopted)
	}
	if got := sentTo(t, lb, down, false); got != ex.Backend {
		t.Fatalf("explain said %s, the packet went to %s", ex.Backend, got)
	}
}
