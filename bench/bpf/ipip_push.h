// SPDX-License-Identifier: GPL-2.0
/* ipip_push.h: the least an IPIP load balancer does to a packet, shared by the benchmark
 * floors (bench/bpf/floor.c, bench/throughput/bpf/fwd.c): grow the head, write a fresh
 * Ethernet header and an outer IPv4 header with its checksum (bpf/csum.h). */
#ifndef IPIP_PUSH_H
#define IPIP_PUSH_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "../../bpf/csum.h"

/* returns the new Ethernet header (MACs left to the caller), or NULL; saddr and daddr in
 * host order */
static __always_inline struct ethhdr *ipip_push(struct xdp_md *ctx, __u32 saddr, __u32 daddr)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;

	if (bpf_xdp_adjust_head(ctx, 0 - (int)sizeof(struct iphdr)))
		return NULL;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return NULL;
	eth->h_proto = bpf_htons(ETH_P_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons((__u16)(data_end - (void *)ip));
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_IPIP;
	ip->check = 0;
	ip->saddr = bpf_htonl(saddr);
	ip->daddr = bpf_htonl(daddr);
	ip->check = ipv4_hdr_csum(ip);
	return eth;
}

#endif
