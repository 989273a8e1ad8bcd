// SPDX-License-Identifier: GPL-2.0
/* lb_edge.h: xdp_lb's paths for the packets of a VIP flow that carry no ports of their own.
 *   ICMP errors about a packet a VIP sent (icmp_err.h) go to the backend of the flow they
 *     quote, encapsulated as that flow's packets are, so the backend's kernel hears them:
 *     "fragmentation needed" / "packet too big" lower its path MTU, which a router on the
 *     direct-server-return path can only tell the VIP.
 *   Fragments (frag.h): the first one carries the ports and is balanced as any packet;
 *     the ports are remembered under {src, dst, IP id, protocol}, and the later fragments
 *     take them, hence the same flow table entry and the same backend.
 * Included by xdp_lb.c after balance(), whose helpers it uses. */
#ifndef LB_EDGE_H
#define LB_EDGE_H

#include "icmp_err.h"
#include "frag.h"

/* the largest outer header: IPv6 and UDP (GUE) */
#define ENCAP_MAX_OUTER (sizeof(struct ipv6hdr) + sizeof(struct udphdr))

/* an ICMP error goes to the flow's backend: the flow table's, else the one an adopted flow
 * names (flowsync.h: a flow another LB node shared, which then enters the flow table as its
 * own next packet would make it), else the ring's. It records no new flow: an error starts
 * none. It is never answered with an error either: one that might not fit once encapsulated
 * is dropped. (The bound also lets the verifier see that send() never calls too_big() here:
 * 1,200 fewer processed instructions.) */
static __always_inline int send_icmp_error(struct xdp_md *ctx, const struct pkt *p,
					   const struct vip_meta *meta, void *flows, const void *fk)
{
	struct flow_val *fv;
	struct backend *be;
	__u32 bid = 0, hash;
	int stale = 0;

	if (p->l3len > encap_mtu - ENCAP_MAX_OUTER)
		return verdict(ctx, REASON_DROP_TOO_BIG, XDP_DROP);
	event(EVENT_ICMP_ERROR);
	hash = flow_hash(fk, p->v6);
	fv = bpf_map_lookup_elem(flows, fk);
	be = flow_backend(fv, &bid, &stale);
	if (!be)
		be = adopted_backend(meta, flows, fk, p->v6, hash, &bid, fv);
	if (!be)
		be = ring_backend(meta, hash, &bid);
	if (!be)
		return verdict(ctx, REASON_DROP_NO_BACKEND, XDP_DROP);
	return send(ctx, p, be, bid, hash);
}

/* an IPv4 ICMP error (the caller checked the type) to a VIP address: the quoted packet went
 * from VIP:port to the client, so its tuple turned around is the flow's key. An error that
 * quotes no VIP flow is the host's. */
static __always_inline int lb_icmp_error_v4(struct xdp_md *ctx, __u32 l2len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct icmp_err_v4 *e = data + l2len;
	struct pkt p = {.l2len = l2len};
	struct flow_key_v4 fk = {};
	struct vip_key vk = {};
	struct vip_meta *meta;

	if ((void *)(e + 1) > data_end || !maybe_vip(vip_filter_bit_v4(e->ip.daddr)) ||
	    !quotes_flow_v4(e))
		return verdict(ctx, REASON_PASS, XDP_PASS);
	vk.addr.v4 = e->qip.saddr;
	vk.port = e->qsport;
	vk.proto = e->qip.protocol;
	vk.family = LB_AF_INET;
	meta = find_vip(&vk);
	if (!meta)
		return verdict(ctx, REASON_PASS, XDP_PASS);
	p.l3len = bpf_ntohs(e->ip.tot_len);
	if (p.l3len < sizeof(*e) || (void *)e + p.l3len > data_end)
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	p.tos = e->ip.tos;
	p.df = !!(e->ip.frag_off & bpf_htons(IP_DF));
	fk.src = e->qip.daddr;
	fk.dst = e->qip.saddr;
	fk.sport = e->qdport;
	fk.dport = e->qsport;
	fk.proto = e->qip.protocol;
	return send_icmp_error(ctx, &p, meta, &flows_v4, &fk);
}

static __always_inline int lb_icmp_error_v6(struct xdp_md *ctx, __u32 l2len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct icmp_err_v6 *e = data + l2len;
	struct pkt p = {.l2len = l2len, .df = 1, .v6 = 1};
	struct flow_key_v6 fk = {};
	struct vip_key vk = {};
	struct vip_meta *meta;
	__be16 *ports;
	__u8 proto;
	__u32 len;

	if ((void *)(e + 1) > data_end ||
	    !maybe_vip(vip_filter_bit_v6(e->ip.daddr.in6_u.u6_addr32)) || !quotes_vip_v6(e))
		return verdict(ctx, REASON_PASS, XDP_PASS);
	ports = quoted_ports_v6(e, data_end, &proto);
	if (!ports)
		return verdict(ctx, REASON_PASS, XDP_PASS);
	__builtin_memcpy(vk.addr.v6, &e->qip.saddr, sizeof(vk.addr.v6));
	vk.port = ports[0];
	vk.proto = proto;
	vk.family = LB_AF_INET6;
	fk.sport = ports[1];
	fk.dport = ports[0];
	fk.proto = proto;
	meta = find_vip(&vk);
	if (!meta)
		return verdict(ctx, REASON_PASS, XDP_PASS);
	len = bpf_ntohs(e->ip.payload_len);
	p.l3len = sizeof(e->ip) + len;
	if (p.l3len < sizeof(*e) || (void *)e + p.l3len > data_end)
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	p.tos = (e->ip.priority << 4) | (e->ip.flow_lbl[0] >> 4);
	__builtin_memcpy(fk.src, &e->qip.daddr, sizeof(fk.src));
	__builtin_memcpy(fk.dst, &e->qip.saddr, sizeof(fk.dst));
	return send_icmp_error(ctx, &p, meta, &flows_v6, &fk);
}

/* lb_frag_v4/v6: the fragment goes the flow path like any packet */
#define FRAG_BALANCE -1

/* a later fragment without a first: one to a VIP address is dropped, since without the
 * ports no backend can be chosen and the host has no use for it (the VIP is not one of its
 * addresses; forwarding, it would route it back toward the VIP). Senders send the first
 * fragment first; one seen out of order costs its datagram. Any other is the host's. */
static __always_inline int orphan_fragment(struct xdp_md *ctx, const __be32 *dst, int family)
{
	if (is_vip_addr(dst, family))
		return verdict(ctx, REASON_DROP_FRAG_ORPHAN, XDP_DROP);
	return verdict(ctx, REASON_PASS_FRAGMENT, XDP_PASS);
}

/* an IPv4 fragment (option-less, checked by the caller): TCP or UDP to a possible VIP
 * address takes its first fragment's ports, filled into p, vk and fk, and the caller sends
 * it the flow path (FRAG_BALANCE: lb_ipv4's one call of balance(), which keeps the
 * verifier's work from doubling); anything else gets its verdict here */
static __always_inline int lb_frag_v4(struct xdp_md *ctx, __u32 l2len, struct pkt *p,
				      struct vip_key *vk, struct flow_key_v4 *fk)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + l2len;
	struct frag_key_v4 key = {};
	struct frag_ports *fp;

	if ((void *)(ip + 1) > data_end)
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return verdict(ctx, REASON_PASS_FRAGMENT, XDP_PASS);
	if (!maybe_vip(vip_filter_bit_v4(ip->daddr)))
		return verdict(ctx, REASON_PASS_FRAGMENT, XDP_PASS);
	p->l3len = bpf_ntohs(ip->tot_len);
	if (p->l3len < sizeof(*ip) || (void *)ip + p->l3len > data_end)
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	key.src = ip->saddr;
	key.dst = ip->daddr;
	key.id = ip->id;
	key.proto = ip->protocol;
	if (!later_fragment_v4(ip)) {
		struct frag_ports ports;

		/* the whole L4 header in the first fragment (RFC 1858: no tiny fragments) */
		if (parse_l4(ip + 1, p->l3len - sizeof(*ip), data_end, ip->protocol, &fk->sport,
			     &fk->dport, &p->syn))
			return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
		ports.sport = fk->sport;
		ports.dport = fk->dport;
		bpf_map_update_elem(&frags_v4, &key, &ports, BPF_ANY);
	} else {
		fp = bpf_map_lookup_elem(&frags_v4, &key);
		if (!fp)
			return orphan_fragment(ctx, &key.dst, LB_AF_INET);
		fk->sport = fp->sport;
		fk->dport = fp->dport;
	}
	p->tos = ip->tos;
	p->df = !!(ip->frag_off & bpf_htons(IP_DF));
	fk->src = key.src;
	fk->dst = key.dst;
	fk->proto = key.proto;
	vk->addr.v4 = key.dst;
	vk->port = fk->dport;
	vk->proto = key.proto;
	vk->family = LB_AF_INET;
	event(EVENT_FRAGMENT);
	return FRAG_BALANCE;
}

/* an IPv6 packet whose first extension header is a fragment header: likewise, the ports
 * of a first fragment right after it */
static __always_inline int lb_frag_v6(struct xdp_md *ctx, __u32 l2len, struct pkt *p,
				      struct vip_key *vk, struct flow_key_v6 *fk)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6 = data + l2len;
	struct frag_hdr_v6 *fh = (void *)(ip6 + 1);
	struct frag_key_v6 key = {};
	struct frag_ports *fp;
	__u32 len;

	if ((void *)(ip6 + 1) > data_end)
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	__builtin_memcpy(key.dst, &ip6->daddr, sizeof(key.dst));
	if (!maybe_vip(vip_filter_bit_v6(key.dst)))
		return verdict(ctx, REASON_PASS_FRAGMENT, XDP_PASS);
	if ((void *)(fh + 1) > data_end)
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	if (fh->nexthdr != IPPROTO_TCP && fh->nexthdr != IPPROTO_UDP)
		return verdict(ctx, REASON_PASS_FRAGMENT, XDP_PASS);
	len = bpf_ntohs(ip6->payload_len);
	if (len < sizeof(*fh) || (void *)(ip6 + 1) + len > data_end)
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	__builtin_memcpy(key.src, &ip6->saddr, sizeof(key.src));
	key.id = fh->id;
	key.proto = fh->nexthdr;
	if (!later_fragment_v6(fh)) {
		struct frag_ports ports;

		if (parse_l4(fh + 1, len - sizeof(*fh), data_end, fh->nexthdr, &fk->sport,
			     &fk->dport, &p->syn))
			return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
		ports.sport = fk->sport;
		ports.dport = fk->dport;
		/* an atomic fragment (RFC 6946: offset 0, no more) is a whole datagram */
		if (fh->frag_off & bpf_htons(IP6_FRAG_MF))
			bpf_map_update_elem(&frags_v6, &key, &ports, BPF_ANY);
	} else {
		fp = bpf_map_lookup_elem(&frags_v6, &key);
		if (!fp)
			return orphan_fragment(ctx, key.dst, LB_AF_INET6);
		fk->sport = fp->sport;
		fk->dport = fp->dport;
	}
	p->l3len = sizeof(*ip6) + len;
	p->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	__builtin_memcpy(fk->src, key.src, sizeof(fk->src));
	__builtin_memcpy(fk->dst, key.dst, sizeof(fk->dst));
	fk->proto = key.proto;
	__builtin_memcpy(vk->addr.v6, key.dst, sizeof(vk->addr.v6));
	vk->port = fk->dport;
	vk->proto = key.proto;
	vk->family = LB_AF_INET6;
	event(EVENT_FRAGMENT);
	return FRAG_BALANCE;
}

#endif
