// SPDX-License-Identifier: GPL-2.0
/* lb_maps.h: the LB node's maps, and the reasons and events its counters are indexed by.
 * Pinned by name under the daemon's pin directory so a restarted lbd adopts them and the
 * flow table survives. */
#ifndef LB_MAPS_H
#define LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb_consts.h"
#include "lb_structs.h"

/* what happened to a packet; each packet is counted under exactly one (stats) */
enum reason {
	REASON_PASS = 0,	/* not for a VIP: handed to the host untouched */
	REASON_TX,		/* encapsulated and sent to a backend */
	REASON_DROP_MALFORMED,	/* truncated or inconsistent headers (version, lengths), or a
				 * bad echo request checksum */
	REASON_DROP_NO_BACKEND, /* VIP has no usable backend */
	REASON_DROP_ENCAP,	/* could not grow the packet for the outer header */
	REASON_DROP_TOO_BIG,	/* too big once encapsulated, and fragmenting allowed (or no
				 * room to answer) */
	REASON_PASS_FRAGMENT,	/* IP fragment not for a VIP address, or not TCP or UDP: the
				 * host's */
	REASON_PROBE_TX,	/* a health probe encapsulated by tc_probe (egress) */
	REASON_PROBE_DROP,	/* a marked probe whose backend is gone or whose headers are odd */
	REASON_ICMP_ECHO,	/* an echo request to a VIP address, answered here */
	REASON_ICMP_TOO_BIG, /* too big once encapsulated: the sender was told the size that fits */
	REASON_DROP_BAD_SOURCE,	 /* for a VIP, from a source no flow may come from and no answer
				  * may go to: broadcast, multicast, unspecified or loopback, or a
				  * group MAC */
	REASON_DROP_FRAG_ORPHAN, /* a later fragment to a VIP address whose first fragment was
				  * not seen: no ports, no flow, and the host cannot use it */
	REASON_MAX,
};

/* flow table events, counted beside the reasons (events) */
enum flow_event {
	EVENT_LRU_HIT = 0,
	EVENT_LRU_MISS,
	EVENT_LRU_SKIP_DOWN, /* hit on a backend that is down or gone: re-hashed */
	EVENT_SYN,
	EVENT_SYN_UNRECORDED, /* a SYN during a flood: sent by the ring, not recorded */
	EVENT_QUIC_CID,	      /* a QUIC short header sent to the server its connection id names */
	EVENT_FRAGMENT,	      /* a fragment of a datagram to a VIP, balanced by the ports of its
			       * first fragment (lb_edge.h) */
	EVENT_ICMP_ERROR,     /* an ICMP error about a VIP's packet, for the backend of the flow
			       * it quotes (lb_edge.h) */
	EVENT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vips SEC(".maps");

/* VIP address filter (bit set: maybe a VIP), see vip_filter_bit() */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIP_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vip_filter SEC(".maps");

/* every VIP address (port 0, proto 0): echo requests to them are answered here */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vip_addrs SEC(".maps");

/* index: backend id (0 is never used); written by the daemon */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backends SEC(".maps");

/* one ring per VIP: an inner array of backend ids, built aside and swapped in with one
 * update, so a packet sees the old ring or the new one, never a mix. BPF_F_INNER_MAP lets
 * each VIP have its own (prime) size. */
struct ring {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65537);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2 * MAX_VIPS); /* room to build a resized ring aside */
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct ring);
} rings SEC(".maps");

/* QUIC servers by {VIP id << 16 | server id}: the backend id of that VIP's backend whose
 * connection ids carry the server id (quic.h) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} quic_servers SEC(".maps");

/* flow tables: LRU with per-CPU free lists (BPF_F_NO_COMMON_LRU), so CPUs do not contend
 * for one LRU lock; a flow stays on its RSS queue and thus its CPU */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FLOWS);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct flow_key_v4);
	__type(value, struct flow_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FLOWS);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct flow_key_v6);
	__type(value, struct flow_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows_v6 SEC(".maps");

/* datagrams in fragments: the ports of each one's first fragment, so the later ones follow
 * its flow (lb_edge.h). Not pinned: an entry matters while the fragments are in flight. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FRAGS);
	__type(key, struct frag_key_v4);
	__type(value, struct frag_ports);
} frags_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FRAGS);
	__type(key, struct frag_key_v6);
	__type(value, struct frag_ports);
} frags_v6 SEC(".maps");

/* the SYN flood guard's window, per CPU; not pinned: it starts afresh with each program */
struct flood_state {
	__u64 window_start; /* ns, bpf_ktime_get_coarse_ns */
	__u64 new_flows;    /* in this window */
	__u64 flooding;	    /* the last window was over the threshold */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flood_state);
} flood SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_ctl);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EVENT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backend_stats SEC(".maps");

#endif
