// SPDX-License-Identifier: GPL-2.0
/* fwd.c: the floors the throughput benchmark measures in xdp_lb's place on the LB, in the
 * same topology: the least a forwarder must do to reach the sink (rewrite the Ethernet
 * addresses, bpf_redirect to the sink-facing veth), and the least an IPIP load balancer must
 * do (push an outer IPv4 header with its checksum, then the same). No lookups, no counters. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "../../bpf/ipip_push.h"

/* set by the loader before load (.rodata) */
const volatile __u8 dst_mac[ETH_ALEN] = {};
const volatile __u8 src_mac[ETH_ALEN] = {};
const volatile __u32 out_ifindex = 0;
const volatile __u32 encap_src = 0; /* host order */
const volatile __u32 encap_dst = 0; /* host order */

static __always_inline void set_macs(struct ethhdr *eth)
{
	/* byte by byte: a memcpy that casts volatile away is folded to the zero initialiser */
#pragma unroll
	for (int k = 0; k < ETH_ALEN; k++) {
		eth->h_dest[k] = dst_mac[k];
		eth->h_source[k] = src_mac[k];
	}
}

SEC("xdp")
int xdp_fwd_floor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	set_macs(eth);
	return bpf_redirect(out_ifindex, 0);
}

SEC("xdp")
int xdp_ipip_fwd_floor(struct xdp_md *ctx)
{
	struct ethhdr *eth = ipip_push(ctx, encap_src, encap_dst);

	if (!eth)
		return XDP_DROP;
	set_macs(eth);
	return bpf_redirect(out_ifindex, 0);
}

char __license[] SEC("license") = "GPL";
