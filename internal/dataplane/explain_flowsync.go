package dataplane

// lbd explain's view of flow sync: the adopted flow a miss of this flow would find
// (bpf/flowsync.h), judged as adopted_backend judges it.

// adoptedEntry is f's entry among the flows other LB nodes shared, nil when there is none;
// vipID is the VIP the flow's packets match. Stale says adopted_backend would not use it.
func (lb *LB) adoptedEntry(f Flow, vipID uint32) (*FlowEntry, error) {
	val, ok, err := lookupFlow(lb.objs.AdoptedV4, lb.objs.AdoptedV6, f)
	if err != nil || !ok {
		return nil, err
	}
	return lb.judgeEntry(val, &vipID), nil
}
