package dataplane

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// Counter is a packet and byte count summed over CPUs.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// reasonNames name the data path's reasons (enum reason, bpf/lb_maps.h); a test checks every value
// of the enum has a name.
var reasonNames = map[lbReason]string{
	lbReasonREASON_PASS:             "pass",
	lbReasonREASON_TX:               "tx",
	lbReasonREASON_DROP_MALFORMED:   "drop_malformed",
	lbReasonREASON_DROP_NO_BACKEND:  "drop_no_backend",
	lbReasonREASON_DROP_ENCAP:       "drop_encap_failed",
	lbReasonREASON_DROP_TOO_BIG:     "drop_too_big",
	lbReasonREASON_PASS_FRAGMENT:    "pass_fragment",
	lbReasonREASON_PROBE_TX:         "probe_tx",
	lbReasonREASON_PROBE_DROP:       "probe_drop",
	lbReasonREASON_ICMP_ECHO:        "icmp_echo_reply",
	lbReasonREASON_ICMP_TOO_BIG:     "icmp_too_big",
	lbReasonREASON_DROP_BAD_SOURCE:  "drop_bad_source",
	lbReasonREASON_DROP_FRAG_ORPHAN: "drop_fragment_orphan",
}

var eventNames = map[lbFlowEvent]string{
	lbFlowEventEVENT_LRU_HIT:        "lru_hit",
	lbFlowEventEVENT_LRU_MISS:       "lru_miss",
	lbFlowEventEVENT_LRU_SKIP_DOWN:  "lru_skip_down",
	lbFlowEventEVENT_SYN:            "syn",
	lbFlowEventEVENT_SYN_UNRECORDED: "syn_unrecorded",
	lbFlowEventEVENT_QUIC_CID:       "quic_cid",
	lbFlowEventEVENT_FRAGMENT:       "fragment",
	lbFlowEventEVENT_ICMP_ERROR:     "icmp_error",
}

// Stats is a snapshot of the LB's counters.
type Stats struct {
	Verdicts map[string]Counter                // by reason: pass, tx, drop_*
	Events   map[string]uint64                 // flow table: lru_hit, lru_miss, …
	VIPs     map[VIPKey]Counter                // packets sent to backends, per VIP
	Backends map[VIPKey]map[netip.Addr]Counter // per VIP and backend
}

func sumCounters(m *ebpf.Map, key uint32) (Counter, error) {
	var per []lbCounter
	if err := m.Lookup(key, &per); err != nil {
		return Counter{}, err
	}
	var c Counter
	for _, p := range per {
		c.Packets += p.Packets
		c.Bytes += p.Bytes
	}
	return c, nil
}

// Stats sums the per-CPU counters.
func (lb *LB) Stats() (Stats, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	st := Stats{
		Verdicts: map[string]Counter{},
		Events:   map[string]uint64{},
		VIPs:     map[VIPKey]Counter{},
		Backends: map[VIPKey]map[netip.Addr]Counter{},
	}
	for id, name := range reasonNames {
		c, err := sumCounters(lb.objs.Stats, uint32(id))
		if err != nil {
			return st, fmt.Errorf("read counter %s: %w", name, err)
		}
		st.Verdicts[name] = c
	}
	for id, name := range eventNames {
		var per []uint64
		if err := lb.objs.Events.Lookup(uint32(id), &per); err != nil {
			return st, fmt.Errorf("read event %s: %w", name, err)
		}
		var n uint64
		for _, p := range per {
			n += p
		}
		st.Events[name] = n
	}
	for key, vs := range lb.vips {
		c, err := sumCounters(lb.objs.VipStats, vs.id)
		if err != nil {
			return st, fmt.Errorf("read vip %s counters: %w", key, err)
		}
		st.VIPs[key] = c
		st.Backends[key] = map[netip.Addr]Counter{}
	}
	for pk, slot := range lb.pairs {
		c, err := sumCounters(lb.objs.BackendStats, slot.id)
		if err != nil {
			return st, fmt.Errorf("read backend %s counters: %w", pk.addr, err)
		}
		if st.Backends[pk.vip] == nil {
			st.Backends[pk.vip] = map[netip.Addr]Counter{}
		}
		st.Backends[pk.vip][pk.addr] = c
	}
	return st, nil
}
