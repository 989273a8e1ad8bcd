// SPDX-License-Identifier: GPL-2.0
/* be_maps.h: the backend's maps: whom it accepts tunnelled packets from and for, the
 * decapsulated flows (so replies can be restored to the VIP), and counters with their
 * reasons. */
#ifndef BE_MAPS_H
#define BE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb_consts.h"
#include "lb_structs.h"

/* what the backend's programs did with a packet they acted on (be_stats); packets that
 * are not theirs pass uncounted */
enum reason {
	REASON_DECAP = 0,	/* outer header removed, VIP rewritten, flow recorded */
	REASON_DECAP_MALFORMED, /* tunnelled packet with inconsistent headers (versions,
				 * lengths): dropped */
	REASON_RESTORED,	/* reply source rewritten back to the VIP */
	REASON_REFUSED_SOURCE,	/* tunnelled packet from outside the LB nodes' sources: dropped */
	REASON_REFUSED_VIP,    /* tunnelled packet for a VIP this backend does not serve: dropped */
	REASON_DECAP_FRAGMENT, /* a fragment decapsulated, its destination rewritten (the
				* first one's flow recorded) (be_edge.h) */
	REASON_DECAP_ICMP_ERROR, /* an ICMP error about a flow served here, decapsulated and
				  * rewritten so that the kernel finds the socket (be_edge.h) */
	REASON_REFUSED_FRAGMENT, /* a later fragment whose first fragment was not taken here:
				  * dropped */
	REASON_MAX,
};

/* the LB nodes' encapsulation sources: an outer source outside them is refused, or anyone
 * who reaches this host could make it answer "from" a VIP to any address */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_LB_SOURCES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key_v4);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_sources_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_LB_SOURCES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key_v6);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_sources_v6 SEC(".maps");

/* the VIPs this backend serves: {addr, port, proto}, {addr, 0, proto} for every port of a
 * protocol, {addr, 0, 0} for all of an address; an inner packet for anything else is
 * refused */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} served_vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_DSR_FLOWS);
	__type(key, struct reply_key_v4);
	__type(value, struct reply_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_flows_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_DSR_FLOWS);
	__type(key, struct reply_key_v6);
	__type(value, struct reply_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_flows_v6 SEC(".maps");

/* replies in fragments whose first fragment was given the VIP back, keyed {this host, the
 * client, IP id, protocol}: the VIP their later fragments take (be_reply_frag.h). Not
 * pinned: an entry matters while the fragments leave. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FRAGS);
	__type(key, struct frag_key_v4);
	__type(value, struct reply_val);
} dsr_reply_frags_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FRAGS);
	__type(key, struct frag_key_v6);
	__type(value, struct reply_val);
} dsr_reply_frags_v6 SEC(".maps");

/* datagrams in fragments whose first fragment was taken: their later fragments, which
 * carry no ports to check, are taken too (be_edge.h). Not pinned, like the LB's. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FRAGS);
	__type(key, struct frag_key_v4);
	__type(value, __u32);
} dsr_frags_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FRAGS);
	__type(key, struct frag_key_v6);
	__type(value, __u32);
} dsr_frags_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} be_stats SEC(".maps");

/* return traffic per VIP: with DSR the backend is the only place it can be measured */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} return_stats SEC(".maps");

#endif
