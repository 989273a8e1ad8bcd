// SPDX-License-Identifier: GPL-2.0
/* floor.c: the floors the data-path benchmark prints beside xdp_lb: a program that only
 * passes; the least an IPIP load balancer must do (push an outer header, XDP_TX); and the
 * least a stateful one must do for a new flow (look its 5-tuple up in an LRU hash sized and
 * shaped like xdp_lb's flow table, miss, insert it, push, XDP_TX). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ipip_push.h"
#include "../../bpf/lb_structs.h"

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

/* xdp_lb's flows_v4 as the benchmark loads it: its key and value (lb_structs.h) and per-CPU
 * LRU lists; the benchmark sizes it as it sizes xdp_lb's (loadFloors) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct flow_key_v4);
	__type(value, struct flow_val);
} floor_flows SEC(".maps");

SEC("xdp")
int xdp_insert_floor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct flow_val v = {.backend_id = 1, .gen = 1};
	struct flow_key_v4 k = {};
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);

	if ((void *)(tcp + 1) > data_end || ip->ihl != 5)
		return XDP_DROP;
	k.src = ip->saddr;
	k.dst = ip->daddr;
	k.sport = tcp->source;
	k.dport = tcp->dest;
	k.proto = ip->protocol;
	if (!bpf_map_lookup_elem(&floor_flows, &k))
		bpf_map_update_elem(&floor_flows, &k, &v, BPF_ANY);
	eth = ipip_push(ctx, 0xc6120002, 0xc612000b);
	if (!eth)
		return XDP_DROP;
	__builtin_memset(eth->h_dest, 0x02, ETH_ALEN);
	__builtin_memset(eth->h_source, 0x04, ETH_ALEN);
	return XDP_TX;
}

char __license[] SEC("license") = "GPL";
