// SPDX-License-Identifier: GPL-2.0
/* lb_structs.h: map keys and values. Addresses and ports are in network byte order. */
#ifndef LB_STRUCTS_H
#define LB_STRUCTS_H

#include <linux/types.h>

/* v6 first: bpf2go mirrors a union by its first member, and Go needs all 16 bytes */
union lb_addr {
	__be32 v6[4];
	__be32 v4;
};

struct vip_key {
	union lb_addr addr;
	__be16 port; /* 0: port-wildcard VIP */
	__u8 proto;
	__u8 family; /* LB_AF_INET or LB_AF_INET6 */
};

struct vip_meta {
	__u32 vip_id;	 /* index into vip_stats, stable for the VIP's life */
	__u32 ring_id;	 /* index into rings; a ring of another size gets a fresh slot */
	__u32 flags;	 /* VIP_F_* */
	__u32 ring_size; /* slots in this VIP's ring, a prime */
};

/* IPv4 flows: a compact key keeps the LRU hash cheap */
struct flow_key_v4 {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct flow_key_v6 {
	__be32 src[4];
	__be32 dst[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* a datagram in fragments (frag.h), as each of its fragments names it: addresses, IP
 * identification (16 bits in IPv4, 32 in IPv6's fragment header) and protocol */
struct frag_key_v4 {
	__be32 src;
	__be32 dst;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

struct frag_key_v6 {
	__be32 src[4];
	__be32 dst[4];
	__be32 id;
	__u8 proto;
	__u8 pad[3];
};

/* LB side: the ports the first fragment carried, which lead the later ones to its flow */
struct frag_ports {
	__be16 sport;
	__be16 dport;
};

struct flow_val {
	__u32 backend_id;
	__u32 gen; /* backend generation when recorded: a reused id does not inherit flows */
};

struct backend {
	union lb_addr addr;
	__u32 gen;
	__u32 flags;	 /* BE_F_* */
	__u32 ifindex;	 /* 0: XDP_TX out of the receiving interface, else redirect */
	__u32 vip_id;	 /* the VIP this entry serves (ids are per VIP and backend) */
	__u32 vip_flags; /* that VIP's VIP_F_*: a flow table hit needs no VIP lookup */
	__u8 dmac[6];	 /* next hop toward the backend */
	__u8 smac[6];	 /* our interface's address */
};

/* runtime switches written by the daemon (lb_ctl[0]) */
struct lb_ctl {
	__u32 wildcard_vips; /* port-wildcard VIPs configured: 0 spares non-VIP traffic a lookup */
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

/* backend side: LPM trie keys of the LB nodes' source prefixes */
struct lpm_key_v4 {
	__u32 prefixlen;
	__be32 addr;
};

struct lpm_key_v6 {
	__u32 prefixlen;
	__be32 addr[4];
};

/* backend side: a decapsulated flow, keyed as its replies look */
struct reply_key_v4 {
	__be32 remote; /* the client */
	__be32 local;  /* this backend's address */
	__be16 rport;
	__be16 lport;
	__u8 proto;
	__u8 pad[3];
};

struct reply_key_v6 {
	__be32 remote[4];
	__be32 local[4];
	__be16 rport;
	__be16 lport;
	__u8 proto;
	__u8 pad[3];
};

struct reply_val {
	union lb_addr vip;
	__be16 vip_port;
	__u8 family;
	__u8 pad;
};

#endif
