/* icmp.h: ICMP messages the LB writes itself: echo replies for VIPs, and "fragmentation
 * needed" / "packet too big" for packets that would not fit once encapsulated. */
#ifndef ICMP_H
#define ICMP_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb_consts.h"
#include "csum.h"
#include "encap.h"

/* the head of ICMP and ICMPv6 headers (linux/icmp.h drags in libc) */
struct lb_icmp {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__be32 rest; /* echo: id and sequence; too big: the MTU */
};

#define ICMP_TYPE_ECHOREPLY 0
#define ICMP_TYPE_DEST_UNREACH 3
#define ICMP_CODE_FRAG_NEEDED 4
#define ICMP_TYPE_ECHO 8
#define ICMPV6_TYPE_PKT_TOOBIG 2
#define ICMPV6_TYPE_ECHO_REQUEST 128
#define ICMPV6_TYPE_ECHO_REPLY 129

/* quoted from the offending packet: its IP header and the first 8 bytes after it, enough
 * for the sender to find the connection (RFC 792, RFC 4443 asks for no more) */
#define QUOTE_V4 (sizeof(struct iphdr) + 8)
#define QUOTE_V6 (sizeof(struct ipv6hdr) + 8)

/* the MACs of the frame at data, swapped: the answer goes back where the packet came from */
static __always_inline void swap_eth(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	__u8 tmp[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return;
	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

/* turn the packet (L2 header of l2len bytes, then IP) into an answer of hdr bytes of new
 * IP + ICMP header followed by the first quote bytes of the original IP packet: the head
 * grows by hdr, the L2 header moves to the front with its MACs swapped, the tail is cut */
static __always_inline void *make_room(struct xdp_md *ctx, __u32 l2len, __u32 hdr, __u32 quote)
{
	void *data, *data_end;
	__u8 l2[18];

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(l2) > data_end || data + l2len + quote > data_end)
		return NULL;
	__builtin_memcpy(l2, data, sizeof(l2));
	if (bpf_xdp_adjust_head(ctx, 0 - (int)hdr))
		return NULL;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (bpf_xdp_adjust_tail(ctx, (int)(l2len + hdr + quote) - (int)(data_end - data)))
		return NULL;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(l2) > data_end)
		return NULL;
	__builtin_memcpy(data, l2, sizeof(l2)); /* the original IP header moved no bytes */
	swap_eth(data, data_end);
	return data + l2len;
}

/* IPv4 "fragmentation needed" to the sender of the packet at data + l2len, from this node,
 * saying the largest packet that fits is mtu */
static __always_inline int too_big_v4(struct xdp_md *ctx, __u32 l2len, __u16 mtu)
{
	void *data_end;
	struct iphdr *ip, *orig;
	struct lb_icmp *ic;
	__be32 client;
	__u8 tos;

	orig = (void *)(long)ctx->data + l2len;
	if ((void *)(orig + 1) > (void *)(long)ctx->data_end)
		return -1;
	client = orig->saddr;
	tos = orig->tos;
	ip = make_room(ctx, l2len, sizeof(*ip) + sizeof(*ic), QUOTE_V4);
	data_end = (void *)(long)ctx->data_end;
	if (!ip || (void *)ip + sizeof(*ip) + sizeof(*ic) + QUOTE_V4 > data_end)
		return -1;
	ic = (void *)(ip + 1);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = tos;
	ip->tot_len = bpf_htons(sizeof(*ip) + sizeof(*ic) + QUOTE_V4);
	ip->id = 0;
	ip->frag_off = bpf_htons(IP_DF);
	ip->ttl = ENCAP_TTL;
	ip->protocol = IPPROTO_ICMP;
	ip->check = 0;
	ip->saddr = encap_src_v4;
	ip->daddr = client;
	ip->check = ipv4_hdr_csum(ip);
	ic->type = ICMP_TYPE_DEST_UNREACH;
	ic->code = ICMP_CODE_FRAG_NEEDED;
	ic->checksum = 0;
	ic->rest = bpf_htonl(mtu); /* unused (16 bits), next-hop MTU (16 bits) */
	ic->checksum = csum_fold32(bpf_csum_diff(NULL, 0, (void *)ic, sizeof(*ic) + QUOTE_V4, 0));
	return 0;
}

/* IPv6 "packet too big" likewise */
static __always_inline int too_big_v6(struct xdp_md *ctx, __u32 l2len, __u32 mtu)
{
	struct {
		struct in6_addr src, dst;
		__be32 len;
		__be32 next; /* three zero bytes, then the next header */
	} pseudo = {};
	void *data_end;
	struct ipv6hdr *ip6, *orig;
	struct lb_icmp *ic;
	__u32 len = sizeof(*ic) + QUOTE_V6;
	__s64 sum;

	orig = (void *)(long)ctx->data + l2len;
	if ((void *)(orig + 1) > (void *)(long)ctx->data_end)
		return -1;
	pseudo.dst = orig->saddr;
	pseudo.src.in6_u.u6_addr32[0] = encap_src_v6[0];
	pseudo.src.in6_u.u6_addr32[1] = encap_src_v6[1];
	pseudo.src.in6_u.u6_addr32[2] = encap_src_v6[2];
	pseudo.src.in6_u.u6_addr32[3] = encap_src_v6[3];
	pseudo.len = bpf_htonl(len);
	pseudo.next = bpf_htonl(IPPROTO_ICMPV6);
	ip6 = make_room(ctx, l2len, sizeof(*ip6) + sizeof(*ic), QUOTE_V6);
	data_end = (void *)(long)ctx->data_end;
	if (!ip6 || (void *)ip6 + sizeof(*ip6) + len > data_end)
		return -1;
	ic = (void *)(ip6 + 1);
	__builtin_memset(ip6, 0, sizeof(*ip6));
	ip6->version = 6;
	ip6->payload_len = bpf_htons(len);
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = ENCAP_TTL;
	ip6->saddr = pseudo.src;
	ip6->daddr = pseudo.dst;
	ic->type = ICMPV6_TYPE_PKT_TOOBIG;
	ic->code = 0;
	ic->checksum = 0;
	ic->rest = bpf_htonl(mtu);
	sum = bpf_csum_diff(NULL, 0, (void *)&pseudo, sizeof(pseudo), 0);
	if (sum < 0)
		return -1;
	ic->checksum = csum_fold32(bpf_csum_diff(NULL, 0, (void *)ic, len, sum));
	return 0;
}

#endif
