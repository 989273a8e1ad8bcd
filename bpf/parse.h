/* parse.h: bounds-checked Ethernet (one VLAN tag) and L4 port parsing. */
#ifndef PARSE_H
#define PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include "lb_consts.h"

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

#define PARSE_BAD -1

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

/* reads the ports of a TCP or UDP header at l4; 0 on success, PARSE_BAD when truncated,
 * 1 when the protocol carries no ports we balance on */
static __always_inline int parse_ports(void *l4, void *data_end, __u8 proto, __be16 *sport,
				       __be16 *dport, int *syn)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return PARSE_BAD;
		*sport = th->source;
		*dport = th->dest;
		*syn = th->syn && !th->ack;
		return 0;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return PARSE_BAD;
		*sport = uh->source;
		*dport = uh->dest;
		return 0;
	}
	return 1;
}

#endif
