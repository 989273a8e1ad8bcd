// SPDX-License-Identifier: GPL-2.0
/* be_edge.h: xdp_decap's paths for what the LB sends besides whole TCP and UDP packets.
 *   ICMP errors about a flow served here (icmp_err.h): the message is addressed to the VIP
 *     and quotes a packet from the VIP, since tc_egress gave this host's replies the VIP as
 *     their source. Both become this host's address again, checksums kept right, so the
 *     kernel finds the socket and acts: a lower path MTU, a refused port.
 *   Fragments (frag.h): the first one is checked and rewritten like a whole packet and its
 *     flow recorded; the datagram is remembered, and its later fragments, which carry no
 *     ports to check, are taken only if its first was. The LB sends a datagram's first
 *     fragment before the others (it must see it to send them), on one path.
 * Included by tc_egress.c before decap(), whose helpers it uses. */
#ifndef BE_EDGE_H
#define BE_EDGE_H

#include "icmp_err.h"
#include "frag.h"

/* decap_edge's answer for a packet that takes the usual path */
#define EDGE_NONE -1

/* the inner IPv4 message's new destination: the outer one, else this host's own address,
 * else none (the VIP stays: it is configured on this host) */
static __always_inline __be32 edge_to_v4(__be32 self, __be32 vip)
{
	__be32 to = self ? self : local_v4;

	return to ? to : vip;
}

/* (self6 all zero: there is no outer IPv6 destination) */
static __always_inline void edge_to_v6(const __be32 *self6, const __be32 *vip, __be32 *to)
{
	if (self6[0] | self6[1] | self6[2] | self6[3]) {
		__builtin_memcpy(to, self6, 16);
		return;
	}
	to[0] = local_v6[0];
	to[1] = local_v6[1];
	to[2] = local_v6[2];
	to[3] = local_v6[3];
	if (!(to[0] | to[1] | to[2] | to[3]))
		__builtin_memcpy(to, vip, 16);
}

/* the quoted packet's L4 checksum, if the quote of an error of len bytes (from e), whose
 * quoted L4 header is hdr bytes in, holds it: UDP's in its first 8 bytes, TCP's 16 bytes in
 * when more is quoted (Linux quotes up to 576 bytes in all, 1280 for ICMPv6) */
static __always_inline __u16 *quoted_check(void *e, __u32 hdr, __u32 len, __u8 proto,
					   void *data_end)
{
	__u32 off = hdr + (proto == IPPROTO_UDP ? 6 : 16);
	__u16 *c = e + off;

	if (off + 2 > len || (void *)(c + 1) > data_end)
		return NULL;
	return c;
}

/* an IPv4 ICMP error about a flow served here: REASON_DECAP_ICMP_ERROR once rewritten */
static __always_inline int decap_icmp_error_v4(struct icmp_err_v4 *e, __u32 room, void *data_end,
					       __be32 self)
{
	struct vip_key vk = {};
	__be32 vip, to;
	__u16 *qc;
	__u32 len;

	if ((void *)(e + 1) > data_end)
		return REASON_DECAP_MALFORMED;
	if (!icmp_error_v4(e->type))
		return EDGE_NONE;
	len = bpf_ntohs(e->ip.tot_len);
	if (len < sizeof(*e) || len > room || !quotes_flow_v4(e))
		return REASON_DECAP_MALFORMED;
	vk.addr.v4 = e->qip.saddr;
	vk.port = e->qsport;
	vk.proto = e->qip.protocol;
	vk.family = LB_AF_INET;
	if (!serves(&vk))
		return REASON_REFUSED_VIP;
	vip = e->ip.daddr;
	to = edge_to_v4(self, vip);
	e->ip.check = csum_replace4(e->ip.check, vip, to);
	e->ip.daddr = to;
	/* the quoted header's checksum moves against its address, so their sum, which the ICMP
	 * checksum covers, stays; a quoted L4 checksum moves alone (UDP's zero: none) */
	e->qip.check = csum_replace4(e->qip.check, vip, to);
	e->qip.saddr = to;
	qc = quoted_check(e, offsetof(struct icmp_err_v4, qsport), len, e->qip.protocol, data_end);
	if (qc && (*qc || e->qip.protocol == IPPROTO_TCP)) {
		__u16 old = *qc, sum = csum_replace4(old, vip, to);

		if (!sum && e->qip.protocol == IPPROTO_UDP)
			sum = 0xffff;
		*qc = sum;
		e->check = csum_replace2(e->check, old, sum);
	}
	return REASON_DECAP_ICMP_ERROR;
}

/* an ICMPv6 error likewise; its checksum covers the pseudo-header's destination, the quoted
 * source and the quoted L4 checksum, all of which change */
static __always_inline int decap_icmp_error_v6(struct icmp_err_v6 *e, __u32 room, void *data_end,
					       const __be32 *self6)
{
	__u32 len, hdr = offsetof(struct icmp_err_v6, qsport);
	struct vip_key vk = {};
	__be32 vip[4], to[4];
	__u16 *qc, old = 0, sum = 0;
	__be16 *ports;
	__u8 proto;

	if ((void *)(e + 1) > data_end)
		return REASON_DECAP_MALFORMED;
	if (!icmp_error_v6(e->type))
		return EDGE_NONE;
	len = bpf_ntohs(e->ip.payload_len);
	if (sizeof(e->ip) + len < sizeof(*e) || sizeof(e->ip) + len > room || !quotes_vip_v6(e))
		return REASON_DECAP_MALFORMED;
	ports = quoted_ports_v6(e, data_end, &proto);
	if (!ports)
		return REASON_DECAP_MALFORMED;
	if (e->qip.nexthdr == IPPROTO_FRAGMENT)
		hdr += sizeof(struct frag_hdr_v6);
	__builtin_memcpy(vip, &e->ip.daddr, sizeof(vip));
	__builtin_memcpy(vk.addr.v6, vip, sizeof(vk.addr.v6));
	vk.port = ports[0];
	vk.proto = proto;
	vk.family = LB_AF_INET6;
	if (!serves(&vk))
		return REASON_REFUSED_VIP;
	edge_to_v6(self6, vip, to);
	qc = quoted_check(e, hdr, sizeof(e->ip) + len, proto, data_end);
	if (qc)
		sum = old = *qc;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		e->check = csum_replace4(e->check, vip[i], to[i]); /* pseudo-header */
		e->check = csum_replace4(e->check, vip[i], to[i]); /* quoted source */
		sum = csum_replace4(sum, vip[i], to[i]);
		e->ip.daddr.in6_u.u6_addr32[i] = to[i];
		e->qip.saddr.in6_u.u6_addr32[i] = to[i];
	}
	/* a zero UDP checksum is no IPv6 sender's: left as it came */
	if (qc && (old || proto == IPPROTO_TCP)) {
		if (!sum && proto == IPPROTO_UDP)
			sum = 0xffff;
		*qc = sum;
		e->check = csum_replace2(e->check, old, sum);
	}
	return REASON_DECAP_ICMP_ERROR;
}

/* an IPv4 fragment of a datagram to a VIP: REASON_DECAP_FRAGMENT once rewritten */
static __always_inline int decap_frag_v4(struct iphdr *ip, __u32 room, void *data_end, __be32 self)
{
	struct frag_key_v4 key = {};
	struct reply_key_v4 k = {};
	struct reply_val dv = {};
	struct vip_key vk = {};
	struct inner in = {};
	__u32 len, one = 1;
	__be32 to;

	len = bpf_ntohs(ip->tot_len);
	if (len < sizeof(*ip) || len > room)
		return REASON_DECAP_MALFORMED;
	key.src = ip->saddr;
	key.dst = ip->daddr;
	key.id = ip->id;
	key.proto = ip->protocol;
	to = edge_to_v4(self, ip->daddr);
	if (later_fragment_v4(ip)) {
		if (!bpf_map_lookup_elem(&dsr_frags_v4, &key))
			return REASON_REFUSED_FRAGMENT;
		ip->check = csum_replace4(ip->check, ip->daddr, to);
		ip->daddr = to;
		return REASON_DECAP_FRAGMENT;
	}
	/* the first: its ports inside it, for a VIP served here, as for a whole packet */
	if (parse_l4(ip + 1, len - sizeof(*ip), data_end, ip->protocol, &in.rport, &in.lport,
		     &in.syn))
		return REASON_DECAP_MALFORMED;
	in.proto = ip->protocol;
	vk.addr.v4 = ip->daddr;
	vk.port = in.lport;
	vk.proto = in.proto;
	vk.family = LB_AF_INET;
	if (!serves(&vk))
		return REASON_REFUSED_VIP;
	dv.vip.v4 = ip->daddr;
	if (rewrite_dst_v4(ip, data_end, to, &in, &k))
		return REASON_DECAP_MALFORMED;
	dv.vip_port = k.lport;
	dv.family = LB_AF_INET;
	record_reply_flow(&dsr_flows_v4, &k, &dv);
	bpf_map_update_elem(&dsr_frags_v4, &key, &one, BPF_ANY);
	return REASON_DECAP_FRAGMENT;
}

/* an IPv6 packet whose first extension header is a fragment header, likewise */
static __always_inline int decap_frag_v6(struct ipv6hdr *ip6, __u32 room, void *data_end,
					 const __be32 *self6)
{
	struct frag_hdr_v6 *fh = (void *)(ip6 + 1);
	struct frag_key_v6 key = {};
	struct reply_key_v6 k = {};
	struct reply_val dv = {};
	struct vip_key vk = {};
	struct inner in = {};
	__u32 len, one = 1;
	__be32 to[4];

	if ((void *)(fh + 1) > data_end)
		return REASON_DECAP_MALFORMED;
	len = bpf_ntohs(ip6->payload_len);
	if (len < sizeof(*fh) || sizeof(*ip6) + len > room)
		return REASON_DECAP_MALFORMED;
	__builtin_memcpy(key.src, &ip6->saddr, sizeof(key.src));
	__builtin_memcpy(key.dst, &ip6->daddr, sizeof(key.dst));
	key.id = fh->id;
	key.proto = fh->nexthdr;
	edge_to_v6(self6, key.dst, to);
	if (later_fragment_v6(fh)) {
		if (!bpf_map_lookup_elem(&dsr_frags_v6, &key))
			return REASON_REFUSED_FRAGMENT;
		__builtin_memcpy(&ip6->daddr, to, sizeof(to));
		return REASON_DECAP_FRAGMENT;
	}
	if (parse_l4(fh + 1, len - sizeof(*fh), data_end, fh->nexthdr, &in.rport, &in.lport,
		     &in.syn))
		return REASON_DECAP_MALFORMED;
	in.proto = key.proto;
	__builtin_memcpy(vk.addr.v6, key.dst, sizeof(vk.addr.v6));
	vk.port = in.lport;
	vk.proto = in.proto;
	vk.family = LB_AF_INET6;
	if (!serves(&vk))
		return REASON_REFUSED_VIP;
	__builtin_memcpy(dv.vip.v6, key.dst, sizeof(dv.vip.v6));
	if (rewrite_dst_v6(ip6, fh + 1, data_end, to, &in, &k))
		return REASON_DECAP_MALFORMED;
	dv.vip_port = k.lport;
	dv.family = LB_AF_INET6;
	record_reply_flow(&dsr_flows_v6, &k, &dv);
	/* an atomic fragment (offset 0, no more) has no others to let in */
	if (fh->frag_off & bpf_htons(IP6_FRAG_MF))
		bpf_map_update_elem(&dsr_frags_v6, &key, &one, BPF_ANY);
	return REASON_DECAP_FRAGMENT;
}

/* the most bytes of outer headers before the inner packet: Ethernet, a VLAN tag, IPv6, UDP */
#define EDGE_MAX_INNER_OFF (18 + 40 + 8)

/* the inner packet inner_off bytes into the frame (IPv4 when inner_v4), of at most room
 * bytes by the outer header, whose destination address (this host's) is self_off bytes into
 * the frame (0: there is none of the inner packet's family; use local_v4 or local_v6): an
 * ICMP error or a fragment is checked and rewritten here, and the reason to count it by
 * returned (REASON_DECAP_ICMP_ERROR or REASON_DECAP_FRAGMENT: strip the outer header);
 * EDGE_NONE for any other packet, which takes the usual path.
 * A global function, not inlined: the verifier checks it once, with its arguments unknown,
 * instead of once per decap() call site and per path into it (three call sites, each with
 * and without a VLAN tag): inlined, it added 22,000 processed instructions to xdp_decap;
 * as a global function, 5,500. */
__noinline int decap_edge(struct xdp_md *ctx, __u64 inner_off, __u32 room, __u32 inner_v4,
			  __u64 self_off)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct frag_hdr_v6 *fh;
	struct ipv6hdr *ip6;
	__be32 self6[4] = {};

	if (inner_off > EDGE_MAX_INNER_OFF || self_off > EDGE_MAX_INNER_OFF)
		return EDGE_NONE;
	if (inner_v4) {
		struct iphdr *ip = data + inner_off;
		__be32 *s = data + self_off, self = 0;

		if (self_off) {
			if ((void *)(s + 1) > data_end)
				return EDGE_NONE;
			self = *s;
		}
		if ((void *)(ip + 1) > data_end || *(__u8 *)ip != IPV4_VER_IHL5)
			return EDGE_NONE;
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
			if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
				return REASON_DECAP_MALFORMED; /* the LB sends no others */
			return decap_frag_v4(ip, room, data_end, self);
		}
		if (ip->protocol == IPPROTO_ICMP)
			return decap_icmp_error_v4((void *)ip, room, data_end, self);
		return EDGE_NONE;
	}
	if (self_off) {
		__u8 *s = data + self_off;

		if ((void *)(s + sizeof(self6)) > data_end)
			return EDGE_NONE;
		__builtin_memcpy(self6, s, sizeof(self6));
	}
	ip6 = data + inner_off;
	fh = (void *)(ip6 + 1);
	if ((void *)(fh + 1) > data_end || ip6->version != 6)
		return EDGE_NONE;
	if (ip6->nexthdr == IPPROTO_FRAGMENT) {
		if (fh->nexthdr != IPPROTO_TCP && fh->nexthdr != IPPROTO_UDP)
			return REASON_DECAP_MALFORMED;
		return decap_frag_v6(ip6, room, data_end, self6);
	}
	if (ip6->nexthdr == IPPROTO_ICMPV6)
		return decap_icmp_error_v6((void *)ip6, room, data_end, self6);
	return EDGE_NONE;
}

#endif
