// SPDX-License-Identifier: GPL-2.0
/* parse.h: bounds-checked Ethernet (one VLAN tag) and L4 header parsing. */
#ifndef PARSE_H
#define PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb_consts.h"

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

#define PARSE_BAD -1

/* the frame's length, from the packet pointers: arithmetic on the raw ctx fields lets
 * clang mix pkt_end into integer math, which the verifier refuses (clang 19, linux 6.18) */
static __always_inline __u64 frame_len(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	return data_end - data;
}

/* the first byte of an option-less IPv4 header: version 4, IHL 5 */
#define IPV4_VER_IHL5 0x45

/* returns the L2 header length (14, or 18 with one VLAN tag) and the L3 protocol in *proto;
 * PARSE_BAD when the frame is shorter than its headers */
static __always_inline int parse_eth(void *data, void *data_end, __be16 *proto)
{
	struct ethhdr *eth = data;
	struct vlan_hdr *vh;

	if ((void *)(eth + 1) > data_end)
		return PARSE_BAD;
	*proto = eth->h_proto;
	if (*proto != ETH_P_8021Q_BE && *proto != ETH_P_8021AD_BE)
		return sizeof(*eth);
	vh = (void *)(eth + 1);
	if ((void *)(vh + 1) > data_end)
		return PARSE_BAD;
	*proto = vh->encap_proto;
	return sizeof(*eth) + sizeof(*vh);
}

/* the ports of the TCP or UDP header at l4, which must lie whole inside the IP packet:
 * l4len is what the IP header says follows it (the frame may hold less, or a trailer
 * more). 0 on success, PARSE_BAD when the header is cut short or inconsistent. The caller
 * checks that l4 + l4len lies inside the frame. */
static __always_inline int parse_l4(void *l4, __u32 l4len, void *data_end, __u8 proto,
				    __be16 *sport, __be16 *dport, __u8 *syn)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if (l4len < sizeof(*th) || (void *)(th + 1) > data_end)
			return PARSE_BAD;
		if (th->doff < 5 || th->doff * 4 > l4len)
			return PARSE_BAD;
		*sport = th->source;
		*dport = th->dest;
		*syn = th->syn && !th->ack;
		return 0;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if (l4len < sizeof(*uh) || (void *)(uh + 1) > data_end)
			return PARSE_BAD;
		*sport = uh->source;
		*dport = uh->dest;
		return 0;
	}
	return PARSE_BAD;
}

/* addresses no answer may go to and no flow may come from: 0/8 ("this network", the
 * unspecified address), 127/8 (loopback), 224/4 (multicast) and 240/4 (reserved, and the
 * limited broadcast). a is in network order, loaded as the little-endian target does. */
static __always_inline int martian_v4(__be32 a)
{
	__u8 first = ((__u8 *)&a)[0];

	return first == 0 || first == 127 || first >= 224;
}

/* ::, ::1 and ff00::/8 (multicast) */
static __always_inline int martian_v6(const __be32 *a)
{
	if (((const __u8 *)a)[0] == 0xff)
		return 1;
	return !(a[0] | a[1] | a[2]) && (!a[3] || a[3] == bpf_htonl(1));
}

/* a group (multicast or broadcast) Ethernet address: never a sender's */
static __always_inline int mac_group(const __u8 *mac)
{
	return mac[0] & 1;
}

#endif
