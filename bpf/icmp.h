// SPDX-License-Identifier: GPL-2.0
/* icmp.h: ICMP messages the LB writes itself, in place of the packet that asked for them:
 * echo replies for VIP addresses, and "fragmentation needed" / "packet too big" for packets
 * that would not fit once encapsulated. Each checks the request and whom it answers; the
 * caller picks the verdict from the result. */
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
#include "parse.h"
#include "csum.h"
#include "encap.h"

/* the head of ICMP and ICMPv6 headers (linux/icmp.h drags in libc) */
struct lb_icmp {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__be32 rest; /* echo: id and sequence; too big: the MTU */
};

#define ICMP_TYPE_ECHOREPLY	 0
#define ICMP_TYPE_DEST_UNREACH	 3
#define ICMP_CODE_FRAG_NEEDED	 4
#define ICMP_TYPE_ECHO		 8
#define ICMPV6_TYPE_PKT_TOOBIG	 2
#define ICMPV6_TYPE_ECHO_REQUEST 128
#define ICMPV6_TYPE_ECHO_REPLY	 129

/* what an ICMP builder did */
#define ICMP_BUILT	0  /* the frame holds the answer: send it back (XDP_TX) */
#define ICMP_MALFORMED	-1 /* the request's lengths or checksum are wrong: no answer */
#define ICMP_BAD_SOURCE -2 /* the sender is no unicast host: never answered */
#define ICMP_NO_ROOM	-3 /* the frame could not be reshaped */

/* quoted from the offending packet: its IP header and the first 8 bytes after it, enough
 * for the sender to find the connection (RFC 792, RFC 4443 asks for no more) */
#define QUOTE_V4 (sizeof(struct iphdr) + 8)
#define QUOTE_V6 (sizeof(struct ipv6hdr) + 8)

/* the MAC address of the interface xdp_lb is attached to, set by the daemon before load:
 * answers leave from it, whatever (broadcast, multicast) address the request was sent to */
volatile const __u8 lb_mac[ETH_ALEN] = {};

/* the Ethernet header of an answer: back to the sender, from this interface */
static __always_inline void reply_eth(struct ethhdr *eth)
{
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++)
		eth->h_source[i] =
			lb_mac[i]; /* volatile: read each byte, clang may not fold them */
}

/* cut the frame to its L2 header and an IP packet of l3len bytes: a trailer (Ethernet
 * padding, or junk) is no part of the packet and must not ride along */
static __always_inline int trim_to(struct xdp_md *ctx, __u32 l2len, __u32 l3len)
{
	long frame = frame_len(ctx);

	if (frame < (long)(l2len + l3len))
		return -1;
	if (frame > (long)(l2len + l3len) &&
	    bpf_xdp_adjust_tail(ctx, (int)(l2len + l3len) - (int)frame))
		return -1;
	return 0;
}

/* an echo request (already known to be one, to a VIP address) answered in place. The
 * request must be whole and its checksum right, and its sender a unicast host: never a
 * reflector toward broadcast or multicast. The type is the first byte of the first 16-bit
 * word, which the incremental checksum update relies on. */
static __always_inline int echo_reply_v4(struct xdp_md *ctx, __u32 l2len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + l2len;
	struct lb_icmp *ic = (void *)(ip + 1);
	__u32 len;
	__be32 vip;
	__s64 sum;

	if ((void *)(ic + 1) > data_end)
		return ICMP_MALFORMED;
	len = bpf_ntohs(ip->tot_len);
	if (len < sizeof(*ip) + sizeof(*ic) || (void *)ip + len > data_end)
		return ICMP_MALFORMED;
	if (martian_v4(ip->saddr) || mac_group(eth->h_source))
		return ICMP_BAD_SOURCE;
	sum = csum_bytes(ctx, l2len + sizeof(*ip), len - sizeof(*ip), 0);
	if (sum < 0 || csum_fold32(sum))
		return ICMP_MALFORMED;
	if (trim_to(ctx, l2len, len))
		return ICMP_NO_ROOM;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip = data + l2len;
	ic = (void *)(ip + 1);
	if ((void *)(ic + 1) > data_end)
		return ICMP_NO_ROOM;
	vip = ip->daddr;
	ip->daddr = ip->saddr;
	ip->saddr = vip;
	ip->ttl = ENCAP_TTL;
	ip->check = 0;
	ip->check = ipv4_hdr_csum(ip);
	ic->type = ICMP_TYPE_ECHOREPLY;
	ic->checksum = csum_replace4(ic->checksum, ICMP_TYPE_ECHO, ICMP_TYPE_ECHOREPLY);
	reply_eth(eth);
	return ICMP_BUILT;
}

/* the ICMPv6 pseudo-header (RFC 8200 8.1) of a message of len bytes from src to dst */
static __always_inline __u32 pseudo_sum_v6(const __be32 *src, const __be32 *dst, __u32 len)
{
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < 4; i++)
		sum += (__u64)src[i] + dst[i];
	sum += bpf_htonl(len) + bpf_htonl(IPPROTO_ICMPV6);
	sum = (sum & 0xffffffff) + (sum >> 32);
	return (sum & 0xffffffff) + (sum >> 32);
}

static __always_inline int echo_reply_v6(struct xdp_md *ctx, __u32 l2len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = data + l2len;
	struct lb_icmp *ic = (void *)(ip6 + 1);
	struct in6_addr vip;
	__u32 len;
	__s64 sum;

	if ((void *)(ic + 1) > data_end)
		return ICMP_MALFORMED;
	len = bpf_ntohs(ip6->payload_len);
	if (len < sizeof(*ic) || (void *)(ip6 + 1) + len > data_end)
		return ICMP_MALFORMED;
	if (martian_v6(ip6->saddr.in6_u.u6_addr32) || mac_group(eth->h_source))
		return ICMP_BAD_SOURCE;
	sum = csum_bytes(
		ctx, l2len + sizeof(*ip6), len,
		pseudo_sum_v6(ip6->saddr.in6_u.u6_addr32, ip6->daddr.in6_u.u6_addr32, len));
	if (sum < 0 || csum_fold32(sum))
		return ICMP_MALFORMED;
	if (trim_to(ctx, l2len, sizeof(*ip6) + len))
		return ICMP_NO_ROOM;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip6 = data + l2len;
	ic = (void *)(ip6 + 1);
	if ((void *)(ic + 1) > data_end)
		return ICMP_NO_ROOM;
	/* swapping the addresses leaves the pseudo-header sum as it was */
	vip = ip6->daddr;
	ip6->daddr = ip6->saddr;
	ip6->saddr = vip;
	ip6->hop_limit = ENCAP_TTL;
	ic->type = ICMPV6_TYPE_ECHO_REPLY;
	ic->checksum =
		csum_replace4(ic->checksum, ICMPV6_TYPE_ECHO_REQUEST, ICMPV6_TYPE_ECHO_REPLY);
	reply_eth(eth);
	return ICMP_BUILT;
}

/* turn the packet (L2 header of l2len bytes, then IP) into an answer of hdr bytes of new
 * IP + ICMP header followed by the first quote bytes of the original IP packet: the head
 * grows by hdr, the L2 header moves to the front addressed back to the sender, the tail is
 * cut */
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
	reply_eth(data);
	return data + l2len;
}

/* IPv4 "fragmentation needed" to the sender of the packet at data + l2len, from this node,
 * saying the largest packet that fits is mtu */
static __always_inline int too_big_v4(struct xdp_md *ctx, __u32 l2len, __u16 mtu)
{
	void *data_end;
	struct ethhdr *eth = (void *)(long)ctx->data;
	struct iphdr *ip, *orig;
	struct lb_icmp *ic;
	__be32 client;
	__u8 tos;

	orig = (void *)(long)ctx->data + l2len;
	if ((void *)(orig + 1) > (void *)(long)ctx->data_end)
		return ICMP_NO_ROOM;
	if (martian_v4(orig->saddr) || mac_group(eth->h_source))
		return ICMP_BAD_SOURCE;
	client = orig->saddr;
	tos = orig->tos;
	ip = make_room(ctx, l2len, sizeof(*ip) + sizeof(*ic), QUOTE_V4);
	data_end = (void *)(long)ctx->data_end;
	if (!ip || (void *)ip + sizeof(*ip) + sizeof(*ic) + QUOTE_V4 > data_end)
		return ICMP_NO_ROOM;
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
	return ICMP_BUILT;
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
	struct ethhdr *eth = (void *)(long)ctx->data;
	struct ipv6hdr *ip6, *orig;
	struct lb_icmp *ic;
	__u32 len = sizeof(*ic) + QUOTE_V6;
	__s64 sum;

	orig = (void *)(long)ctx->data + l2len;
	if ((void *)(orig + 1) > (void *)(long)ctx->data_end)
		return ICMP_NO_ROOM;
	if (martian_v6(orig->saddr.in6_u.u6_addr32) || mac_group(eth->h_source))
		return ICMP_BAD_SOURCE;
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
		return ICMP_NO_ROOM;
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
		return ICMP_NO_ROOM;
	ic->checksum = csum_fold32(bpf_csum_diff(NULL, 0, (void *)ic, len, sum));
	return ICMP_BUILT;
}

#endif
