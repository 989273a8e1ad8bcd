// SPDX-License-Identifier: GPL-2.0
/* floor.c: the two floors the data-path benchmark prints beside xdp_lb: a program that only
 * passes, and the least an IPIP load balancer must do (push an outer header, XDP_TX). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ipip_push.h"

SEC("xdp")
int xdp_pass_floor(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_ipip_floor(struct xdp_md *ctx)
{
	struct ethhdr *eth = ipip_push(ctx, 0xc6120002, 0xc612000b);

	if (!eth)
		return XDP_DROP;
	__builtin_memset(eth->h_dest, 0x02, ETH_ALEN);
	__builtin_memset(eth->h_source, 0x04, ETH_ALEN);
	return XDP_TX;
}

char __license[] SEC("license") = "GPL";
