// SPDX-License-Identifier: GPL-2.0
/* txfloor.c: the connection benchmark's floor, in lbd's place on the LB node: the least an
 * IPIP load balancer does to a packet for the VIP (push an outer IPv4 header, set the
 * MACs toward a backend, XDP_TX back out), with no map lookup, no flow table and no
 * counter. The backend comes from the TCP source port (a connection keeps its port, hence
 * its backend), so the floor loads the same three backends lbd does.
 * Everything else (ARP, the node's own traffic) passes. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ipip_push.h"

#define FLOOR_BACKENDS 3

/* set by the loader before load (.rodata) */
const volatile __u8 dst_macs[FLOOR_BACKENDS][ETH_ALEN] = {};
const volatile __u8 src_mac[ETH_ALEN] = {};
const volatile __u32 vip = 0;			      /* host order */
const volatile __u32 encap_src = 0;		      /* host order */
const volatile __u32 encap_dsts[FLOOR_BACKENDS] = {}; /* host order */

SEC("xdp")
int xdp_ipip_tx_floor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
	__u32 i = 0;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->daddr != bpf_htonl(vip))
		return XDP_PASS;
	if (ip->protocol == IPPROTO_TCP && (void *)(tcp + 1) <= data_end)
		/* the port as it lies (network order: its fast-moving low byte weighs most),
		 * scaled to 0..FLOOR_BACKENDS-1 by a multiply and shift, bounds the verifier
		 * follows (it does not follow a modulo) */
		i = ((__u32)tcp->source * FLOOR_BACKENDS) >> 16;
	eth = ipip_push(ctx, encap_src, encap_dsts[i]);
	if (!eth)
		return XDP_DROP;
	/* byte by byte: a memcpy that casts volatile away is folded to the zero initialiser */
#pragma unroll
	for (int k = 0; k < ETH_ALEN; k++) {
		eth->h_dest[k] = dst_macs[i][k];
		eth->h_source[k] = src_mac[k];
	}
	return XDP_TX;
}

char __license[] SEC("license") = "GPL";
