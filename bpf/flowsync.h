// SPDX-License-Identifier: GPL-2.0
/* flowsync.h: flows that other LB nodes shared ("adopted" flows), looked up on a flow-table
 * miss, so that a connection the router moves to this node keeps the backend its first node
 * recorded even after the rings changed (docs/ARCHITECTURE.md, "Flow sync"). The daemon
 * writes these maps; the data path only reads them and copies a hit into its flow table. */
#ifndef FLOWSYNC_H
#define FLOWSYNC_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb_consts.h"
#include "lb_structs.h"
#include "lb_maps.h"

/* what the adopted lookup found on a flow-table miss (flowsync_events) */
enum flowsync_event {
	FLOWSYNC_ADOPTED_HIT = 0, /* the flow's backend came from the adopted flows */
	FLOWSYNC_ADOPTED_STALE,	  /* an adopted flow named a backend that is down, gone, reused
				   * or of another VIP here: the ring decided */
	FLOWSYNC_EVENT_MAX,
};

/* entries in adopted_v4 and adopted_v6, written by the daemon with them: while a family has
 * none, its misses skip the hash lookup for one array read */
struct flowsync_ctl {
	__u32 adopted_v4;
	__u32 adopted_v6;
};

/* unused by the program: it puts the enum into BTF, so bpf2go emits its names */
volatile const enum flowsync_event flowsync_event_max = FLOWSYNC_EVENT_MAX;

/* adopted flows, keyed like the flow tables; the value names a backend by this node's id
 * and generation, resolved by the daemon from the (VIP, backend address) another node sent.
 * A plain hash, not preallocated (its memory follows the flows at risk): the daemon bounds
 * and ages the entries itself, and only the daemon writes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ADOPTED_FLOWS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flow_key_v4);
	__type(value, struct flow_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} adopted_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ADOPTED_FLOWS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flow_key_v6);
	__type(value, struct flow_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} adopted_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flowsync_ctl);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flowsync_ctl SEC(".maps");

/* bit hash >> ADOPTED_FILTER_SHIFT is set while an adopted flow has that hash (the daemon
 * counts the flows of each bit): a clear bit means no adopted flow is this one */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ADOPTED_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} adopted_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLOWSYNC_EVENT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flowsync_events SEC(".maps");

static __always_inline void flowsync_event(__u32 e)
{
	__u64 *n = bpf_map_lookup_elem(&flowsync_events, &e);

	if (n)
		(*n)++;
}

/* a non-SYN packet of VIP meta that missed the flow table (flows, key fk, flow hash hash):
 * the backend an adopted flow names, if it is still usable here and serves this VIP. The
 * flow then enters this node's flow table, so its next packets hit there: known is its
 * entry when it has a stale one, rewritten in place (as new_flow does). NULL: the ring
 * decides. */
static __always_inline struct backend *adopted_backend(const struct vip_meta *meta, void *flows,
						       const void *fk, int v6, __u32 hash,
						       __u32 *bid, struct flow_val *known)
{
	__u32 zero = 0, bit = hash >> ADOPTED_FILTER_SHIFT, word = bit / 64;
	struct flowsync_ctl *ctl;
	struct flow_val *fv;
	struct backend *be;
	__u64 *w;

	ctl = bpf_map_lookup_elem(&flowsync_ctl, &zero);
	if (!ctl || !(v6 ? ctl->adopted_v6 : ctl->adopted_v4))
		return NULL;
	w = bpf_map_lookup_elem(&adopted_filter, &word);
	if (!w || !(*w & (1ULL << (bit % 64))))
		return NULL;
	fv = bpf_map_lookup_elem(v6 ? (void *)&adopted_v6 : (void *)&adopted_v4, fk);
	if (!fv)
		return NULL;
	be = bpf_map_lookup_elem(&backends, &fv->backend_id);
	if (!be || !be->gen || be->gen != fv->gen || (be->flags & BE_F_DOWN) ||
	    be->vip_id != meta->vip_id) {
		flowsync_event(FLOWSYNC_ADOPTED_STALE);
		return NULL;
	}
	*bid = fv->backend_id;
	if (known) {
		known->backend_id = fv->backend_id;
		known->gen = fv->gen;
	} else {
		bpf_map_update_elem(flows, fk, fv, BPF_ANY);
	}
	flowsync_event(FLOWSYNC_ADOPTED_HIT);
	return be;
}

#endif
