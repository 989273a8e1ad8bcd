// SPDX-License-Identifier: GPL-2.0
/* sink.c: the receiving end of the throughput benchmark. It counts what arrives in a per-CPU
 * array and drops it. A frame whose outer IPv4 header carries IPIP is counted apart, so the
 * run can check that what it counted is what an LB sent toward a backend. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct sink_count {
	__u64 packets;
	__u64 ipip; /* of which: IPv4 with an IPIP payload */
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_count);
} sink_counts SEC(".maps");

SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct sink_count *c;
	__u32 zero = 0;

	c = bpf_map_lookup_elem(&sink_counts, &zero);
	if (!c)
		return XDP_DROP;
	c->packets++;
	c->bytes += data_end - data;
	if ((void *)(ip + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP) &&
	    ip->protocol == IPPROTO_IPIP)
		c->ipip++;
	return XDP_DROP;
}

char __license[] SEC("license") = "GPL";
