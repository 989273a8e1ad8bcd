// SPDX-License-Identifier: GPL-2.0
/* icmp_err.h: ICMP and ICMPv6 errors about a packet a VIP sent, as both ends read them: the
 * message and the quoted packet's headers at fixed offsets. With direct server return a
 * router on the reply path sends its error to the reply's source, the VIP, so it reaches an
 * LB node; the LB sends it to the flow's backend (lb_edge.h), whose decap rewrites it to
 * look like an error about the packet the backend sent (be_edge.h). */
#ifndef ICMP_ERR_H
#define ICMP_ERR_H

#include <linux/types.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb_consts.h"
#include "frag.h"

#define ICMP_ERR_DEST_UNREACH	 3 /* fragmentation needed (code 4) among them */
#define ICMP_ERR_TIME_EXCEEDED	 11
#define ICMPV6_ERR_DEST_UNREACH	 1
#define ICMPV6_ERR_PKT_TOOBIG	 2
#define ICMPV6_ERR_TIME_EXCEEDED 3

/* an IPv4 ICMP error as it arrives: the message's IP header (no options), the ICMP header,
 * then what every router quotes at least (RFC 792): the offending packet's IP header and its
 * first 8 bytes, the ports and TCP's sequence number or UDP's length and checksum */
struct icmp_err_v4 {
	struct iphdr ip;
	__u8 type;
	__u8 code;
	__u16 check;
	__be32 rest; /* fragmentation needed: the next hop's MTU in the low 16 bits */
	struct iphdr qip;
	__be16 qsport; /* the quoted packet's ports: the VIP's, then the client's */
	__be16 qdport;
	__be16 qword[2]; /* TCP: the sequence number; UDP: length, checksum */
};

/* an ICMPv6 error likewise: RFC 4443 quotes as much as fits in 1280 bytes */
struct icmp_err_v6 {
	struct ipv6hdr ip;
	__u8 type;
	__u8 code;
	__u16 check;
	__be32 rest; /* packet too big: the MTU */
	struct ipv6hdr qip;
	__be16 qsport;
	__be16 qdport;
	__be16 qword[2];
};

/* the errors that concern a flow and that its endpoint acts on: destination unreachable
 * (with fragmentation needed) and time exceeded; redirects, parameter problems and the rest
 * stay the host's */
static __always_inline int icmp_error_v4(__u8 type)
{
	return type == ICMP_ERR_DEST_UNREACH || type == ICMP_ERR_TIME_EXCEEDED;
}

static __always_inline int icmp_error_v6(__u8 type)
{
	return type == ICMPV6_ERR_DEST_UNREACH || type == ICMPV6_ERR_PKT_TOOBIG ||
	       type == ICMPV6_ERR_TIME_EXCEEDED;
}

/* does the IPv4 error quote a TCP or UDP packet sent from its own destination (the VIP),
 * with ports (no options, not a later fragment)? */
static __always_inline int quotes_flow_v4(const struct icmp_err_v4 *e)
{
	__u8 p = e->qip.protocol;

	return *(const __u8 *)&e->qip == IPV4_VER_IHL5 && e->qip.saddr == e->ip.daddr &&
	       !(e->qip.frag_off & bpf_htons(IP_OFFSET)) && (p == IPPROTO_TCP || p == IPPROTO_UDP);
}

/* does the ICMPv6 error quote a packet sent from its own destination (the VIP)? */
static __always_inline int quotes_vip_v6(const struct icmp_err_v6 *e)
{
	const __be32 *s = e->qip.saddr.in6_u.u6_addr32, *d = e->ip.daddr.in6_u.u6_addr32;

	return e->qip.version == 6 &&
	       !((s[0] ^ d[0]) | (s[1] ^ d[1]) | (s[2] ^ d[2]) | (s[3] ^ d[3]));
}

/* the quoted IPv6 packet's ports, TCP or UDP (*proto), right after its fixed header or
 * after a fragment header: the first fragment of a reply the backend's kernel fragmented (a
 * large UDP answer), which a router on a smaller link answers with packet too big, since
 * IPv6 routers do not fragment. NULL when the quote carries no ports. */
static __always_inline __be16 *quoted_ports_v6(struct icmp_err_v6 *e, void *data_end, __u8 *proto)
{
	struct frag_hdr_v6 *fh = (void *)&e->qsport;
	__be16 *ports = &e->qsport;

	*proto = e->qip.nexthdr;
	if (*proto == IPPROTO_FRAGMENT) {
		if (later_fragment_v6(fh))
			return NULL;
		*proto = fh->nexthdr;
		ports = (void *)(fh + 1);
		if ((void *)(ports + 2) > data_end)
			return NULL;
	}
	if (*proto != IPPROTO_TCP && *proto != IPPROTO_UDP)
		return NULL;
	return ports;
}

#endif
