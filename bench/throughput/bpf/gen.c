// SPDX-License-Identifier: GPL-2.0
/* gen.c: the traffic generator of the throughput benchmark. It runs under BPF_PROG_TEST_RUN
 * with BPF_F_TEST_XDP_LIVE_FRAMES on the generator's veth and returns XDP_TX, so every frame
 * leaves that veth toward the LB. Live frames come from a page pool whose pages are recycled
 * after the LB and the sink have written into them (xdp_lb pushes an outer header in place):
 * the program therefore rewrites the whole Ethernet, IPv4 and TCP header of every frame.
 *
 * Flows: `flows` == 0 sends one constant tuple (an LRU hit at the LB after the first packet);
 * otherwise the source address and port come from a per-CPU counter, modulo `flows` when
 * `flows` is not ~0 (a set of flows cycled through: LRU misses until the table holds them,
 * hits after), never repeating when it is ~0 (every packet a new flow: an LRU miss).
 * `syn` sends SYNs instead of ACKs: with flows ~0, a flood of spoofed SYNs. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* set by the loader before load (.rodata) */
const volatile __u8 dst_mac[ETH_ALEN] = {};
const volatile __u8 src_mac[ETH_ALEN] = {};
const volatile __u32 src_ip = 0;   /* host order; the constant flow's client */
const volatile __u32 flow_net = 0; /* host order; distinct flows: this /16 | counter >> 16 */
const volatile __u32 dst_ip = 0;   /* host order: the VIP */
const volatile __u16 dst_port = 80;
const volatile __u32 flows = 0;
const volatile __u8 syn = 0;

/* frames this program has sent, per CPU: the generator's own count */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_sent SEC(".maps");

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
	__u32 zero = 0, saddr = src_ip, v;
	__u16 sport = 40000;
	__u64 *n, i;

	if ((void *)(tcp + 1) > data_end)
		return XDP_ABORTED;
	n = bpf_map_lookup_elem(&gen_sent, &zero);
	if (!n)
		return XDP_ABORTED;
	i = (*n)++;
	if (flows) {
		/* 28 bits of counter and the CPU above them: threads never share a flow */
		v = flows == ~0U ? (__u32)i & 0x0fffffff : (__u32)(i % flows);
		v |= bpf_get_smp_processor_id() << 28;
		saddr = flow_net | (v >> 16);
		sport = (__u16)v;
	}

	/* byte by byte: a memcpy that casts volatile away is folded to the zero initialiser */
#pragma unroll
	for (int k = 0; k < ETH_ALEN; k++) {
		eth->h_dest[k] = dst_mac[k];
		eth->h_source[k] = src_mac[k];
	}
	eth->h_proto = bpf_htons(ETH_P_IP);

	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons((__u16)(data_end - (void *)ip));
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000); /* DF */
	ip->ttl = 64;
	ip->protocol = IPPROTO_TCP;
	ip->check = 0; /* nobody verifies the client's checksum on this path */
	ip->saddr = bpf_htonl(saddr);
	ip->daddr = bpf_htonl(dst_ip);

	__builtin_memset(tcp, 0, sizeof(*tcp));
	tcp->source = bpf_htons(sport);
	tcp->dest = bpf_htons(dst_port);
	tcp->seq = bpf_htonl(1);
	tcp->doff = 5;
	if (syn) {
		tcp->syn = 1;
	} else {
		tcp->ack_seq = bpf_htonl(1);
		tcp->ack = 1;
	}
	tcp->window = bpf_htons(512);
	return XDP_TX;
}

char __license[] SEC("license") = "GPL";
