// SPDX-License-Identifier: GPL-2.0
/* encap.h: encapsulation toward a backend: IPIP (4in4, 4in6, 6in6) or GUE (the same inside
 * UDP: GUE variant 1, "direct IP", the inner header's version bits standing for GUE's). */
#ifndef ENCAP_H
#define ENCAP_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb_consts.h"
#include "lb_structs.h"
#include "parse.h"
#include "csum.h"
#include "gue.h"

#define ENCAP_OK  0
#define ENCAP_ERR -1

/* outer source addresses, set by the daemon before load (network byte order) */
volatile const __be32 encap_src_v4 = 0;
volatile const __be32 encap_src_v6[4] = {0, 0, 0, 0};
/* or, for the backends' RSS (a NIC hashes IPIP by the outer addresses alone), a source per
 * flow inside a prefix: the network (network order) and a mask of its host bits (host
 * order; in the last word for IPv6); a zero mask keeps the fixed source above */
volatile const __be32 encap_prefix_v4 = 0;
volatile const __u32 encap_prefix_v4_host = 0;
volatile const __be32 encap_prefix_v6[4] = {0, 0, 0, 0};
volatile const __u32 encap_prefix_v6_host = 0;

/* the host part of a source picked by the flow hash from host bits mask, never the
 * prefix's first or last address (mask is at least 3: a /30 or wider) */
static __always_inline __u32 host_part(__u32 hash, __u32 mask)
{
	__u32 h = hash & mask;

	if (h == 0)
		return 1;
	if (h == mask)
		return mask - 1;
	return h;
}

/* whether the outer source depends on the flow hash */
static __always_inline int encap_src_hashed(void)
{
	return encap_prefix_v4_host || encap_prefix_v6_host;
}

/* after bpf_xdp_adjust_head grew the front by 'grow' bytes, write a fresh L2 header
 * (addresses toward the backend, the old VLAN tag if there was one) */
static __always_inline void *push_l2(struct xdp_md *ctx, __u32 l2len, const struct backend *be,
				     __be16 l3proto, __be16 tpid, __be16 tci, __u32 l3room)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if (l2len == sizeof(struct ethhdr)) {
		if ((void *)(eth + 1) + l3room > data_end)
			return NULL;
		eth->h_proto = l3proto;
	} else {
		struct vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) + l3room > data_end)
			return NULL;
		eth->h_proto = tpid;
		vh->tci = tci;
		vh->encap_proto = l3proto;
	}
	__builtin_memcpy(eth->h_dest, be->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, be->smac, ETH_ALEN);
	return data + l2len;
}

/* the VLAN tag of the frame, read before the head moves */
static __always_inline void save_vlan(struct xdp_md *ctx, __u32 l2len, __be16 *tpid, __be16 *tci)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct vlan_hdr *vh;

	*tpid = 0;
	*tci = 0;
	if (l2len == sizeof(struct ethhdr))
		return;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	vh = (void *)(eth + 1);
	/* two branches, not one: merged, clang zero-extends the packet pointers with shifts,
	 * which the verifier refuses (clang 19, linux 6.18) */
	asm volatile("" : "+r"(vh));
	if ((void *)(vh + 1) > data_end)
		return;
	*tpid = eth->h_proto;
	*tci = vh->tci;
}

/* 4in4 (gue: inside UDP): inner_len is the inner IPv4 total length, tos copied to the outer
 * header */
static __always_inline int encap_4in4(struct xdp_md *ctx, __u32 l2len, const struct backend *be,
				      __u8 tos, __u16 inner_len, int gue, __u32 hash)
{
	__u32 udp = gue ? sizeof(struct udphdr) : 0;
	__be16 tpid, tci;
	struct iphdr *oip;

	save_vlan(ctx, l2len, &tpid, &tci);
	if (bpf_xdp_adjust_head(ctx, 0 - (int)(sizeof(struct iphdr) + udp)))
		return ENCAP_ERR;
	oip = push_l2(ctx, l2len, be, ETH_P_IP_BE, tpid, tci, sizeof(*oip) + sizeof(struct udphdr));
	if (!oip)
		return ENCAP_ERR;
	oip->version = 4;
	oip->ihl = 5;
	oip->tos = tos;
	oip->tot_len = bpf_htons(inner_len + sizeof(*oip) + udp);
	oip->id = 0;
	oip->frag_off = bpf_htons(IP_DF);
	oip->ttl = ENCAP_TTL;
	oip->protocol = IPPROTO_IPIP;
	if (gue) {
		oip->protocol = IPPROTO_UDP;
		push_gue((void *)(oip + 1), inner_len, hash);
	}
	oip->check = 0;
	oip->saddr = encap_src_v4;
	if (encap_prefix_v4_host)
		oip->saddr = encap_prefix_v4 | bpf_htonl(host_part(hash, encap_prefix_v4_host));
	oip->daddr = be->addr.v4;
	oip->check = ipv4_hdr_csum(oip);
	return ENCAP_OK;
}

/* 4in6 and 6in6 (gue: inside UDP): nexthdr is IPPROTO_IPIP or IPPROTO_IPV6, payload_len
 * the inner packet's whole length; the flow label carries the flow hash so backends can
 * spread flows (RSS) */
static __always_inline int encap_ip6(struct xdp_md *ctx, __u32 l2len, const struct backend *be,
				     __u8 tclass, __u16 payload_len, __u8 nexthdr, __u32 hash,
				     int gue)
{
	__u32 udp = gue ? sizeof(struct udphdr) : 0;
	__be16 tpid, tci;
	struct ipv6hdr *oip;

	save_vlan(ctx, l2len, &tpid, &tci);
	if (bpf_xdp_adjust_head(ctx, 0 - (int)(sizeof(struct ipv6hdr) + udp)))
		return ENCAP_ERR;
	oip = push_l2(ctx, l2len, be, ETH_P_IPV6_BE, tpid, tci,
		      sizeof(*oip) + sizeof(struct udphdr));
	if (!oip)
		return ENCAP_ERR;
	oip->version = 6;
	oip->priority = tclass >> 4;
	oip->flow_lbl[0] = ((tclass & 0xf) << 4) | ((hash >> 16) & 0xf);
	oip->flow_lbl[1] = (hash >> 8) & 0xff;
	oip->flow_lbl[2] = hash & 0xff;
	oip->payload_len = bpf_htons(payload_len + udp);
	oip->nexthdr = nexthdr;
	if (gue) {
		oip->nexthdr = IPPROTO_UDP;
		push_gue((void *)(oip + 1), payload_len, hash);
	}
	oip->hop_limit = ENCAP_TTL;
	/* word by word: a volatile read, or clang folds the zero initialiser */
	if (encap_prefix_v6_host) {
		oip->saddr.in6_u.u6_addr32[0] = encap_prefix_v6[0];
		oip->saddr.in6_u.u6_addr32[1] = encap_prefix_v6[1];
		oip->saddr.in6_u.u6_addr32[2] = encap_prefix_v6[2];
		oip->saddr.in6_u.u6_addr32[3] =
			encap_prefix_v6[3] | bpf_htonl(host_part(hash, encap_prefix_v6_host));
	} else {
		oip->saddr.in6_u.u6_addr32[0] = encap_src_v6[0];
		oip->saddr.in6_u.u6_addr32[1] = encap_src_v6[1];
		oip->saddr.in6_u.u6_addr32[2] = encap_src_v6[2];
		oip->saddr.in6_u.u6_addr32[3] = encap_src_v6[3];
	}
	__builtin_memcpy(&oip->daddr, be->addr.v6, sizeof(oip->daddr));
	return ENCAP_OK;
}

#endif
