// SPDX-License-Identifier: GPL-2.0
/* wrap.c: the data-path benchmark's wrapper, which lets BPF_PROG_TEST_RUN repeat a program
 * thousands of times per call (so the kernel's two clock reads per call are spread over all
 * the runs) although the program under test rewrites its packet: before every run it puts
 * the frame back as it was (head, length, bytes) from a template, then tail-calls the
 * program under test (slot 0 of target). xdp_wrap_vary also gives every run a new flow: the
 * source address's low 16 bits and the source port come from a counter, checksums kept
 * right. The benchmark measures each wrapper tail-calling a bare XDP_PASS program as a floor
 * of its own and subtracts it. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "../../bpf/csum.h"

#define TPL_MAX 128 /* bytes of a template frame; the benchmark's frames are shorter */

struct tpl {
	__u32 len;
	__u8 data[TPL_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tpl);
} tpl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

/* runs so far of xdp_wrap_vary: the flow number (one CPU runs a test at a time) */
__u32 flow_n = 0;

/* the frame back to the template's length and bytes; 0 on success */
static __always_inline int restore(struct xdp_md *ctx, struct tpl *t)
{
	__u32 n = t->len;
	int cur;

	if (n == 0 || n > TPL_MAX)
		return -1;
	/* the program under test may have pushed headers (encapsulation): its output's tail
	 * is the input's tail, so the length says how far to move the head back */
	cur = (int)(ctx->data_end - ctx->data);
	if (cur != (int)n && bpf_xdp_adjust_head(ctx, cur - (int)n))
		return -1;
	if (ctx->data_end - ctx->data != n)
		return -1;
	return bpf_xdp_store_bytes(ctx, 0, t->data, n) ? -1 : 0;
}

static __always_inline int run_target(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &target, 0);
	return XDP_ABORTED; /* no program in the slot: the benchmark checks the action */
}

SEC("xdp")
int xdp_wrap(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct tpl *t = bpf_map_lookup_elem(&tpl, &zero);

	if (!t || restore(ctx, t))
		return XDP_ABORTED;
	return run_target(ctx);
}

SEC("xdp")
int xdp_wrap_vary(struct xdp_md *ctx)
{
	__u32 zero = 0, n, from, to;
	struct tpl *t = bpf_map_lookup_elem(&tpl, &zero);
	void *data, *data_end;
	struct iphdr *ip;
	struct tcphdr *tcp;

	if (!t || restore(ctx, t))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	ip = data + sizeof(struct ethhdr);
	tcp = (void *)(ip + 1);
	if ((void *)(tcp + 1) > data_end || ip->protocol != IPPROTO_TCP)
		return XDP_ABORTED;
	n = ++flow_n;
	/* the address's and the port's 16-bit words change: both checksums by RFC 1624 */
	from = ip->saddr;
	to = (from & bpf_htonl(0xffff0000)) | bpf_htonl(n >> 16);
	ip->saddr = to;
	ip->check = csum_replace4(ip->check, from, to);
	tcp->check = csum_replace4(tcp->check, from, to);
	from = tcp->source;
	tcp->source = bpf_htons((__u16)n);
	tcp->check = csum_replace4(tcp->check, from, tcp->source);
	return run_target(ctx);
}

char __license[] SEC("license") = "GPL";
