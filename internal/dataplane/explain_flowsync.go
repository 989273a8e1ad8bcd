package dataplane

// lbd explain's view of flow sync: the adopted flow a miss of this flow would find
// (bpf/flowsync.h), judged as adopted_backend judges it.

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// adoptedEntry is f's entry among the flows other LB nodes shared, nil when there is none;
// vipID is the VIP the flow's packets match. Stale says adopted_backend would not use it.
func (lb *LB) adoptedEntry(f Flow, vipID uint32) (*FlowEntry, error) {
	var val lbFlowVal
	var err error
	if f.Src.Is4() {
		err = lb.objs.AdoptedV4.Lookup(keyV4(f), &val)
	} else {
		err = lb.objs.AdoptedV6.Lookup(keyV6(f), &val)
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up adopted flow: %w", err)
	}
	e := &FlowEntry{BackendID: val.BackendId, Generation: val.Gen}
	be, err := lb.backendEntry(val.BackendId)
	if err != nil {
		e.Stale, e.StaleReason = true, "backend id out of range"
		return e, nil
	}
	if be.Gen != 0 {
		e.Backend = addrFrom(be.Addr.V6, be.Flags&beFlagV6 != 0)
	}
	switch {
	case be.Gen == 0:
		e.Stale, e.StaleReason = true, "the backend was removed (its id is free)"
	case be.Gen != val.Gen:
		e.Stale, e.StaleReason = true, fmt.Sprintf("the id now belongs to another backend (generation %d, the entry has %d)", be.Gen, val.Gen)
	case be.Flags&beFlagDown != 0:
		e.Stale, e.StaleReason = true, "the backend is down"
	case be.VipId != vipID:
		e.Stale, e.StaleReason = true, "the backend serves another VIP here"
	}
	return e, nil
}
