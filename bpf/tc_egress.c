// SPDX-License-Identifier: GPL-2.0
/* tc_egress.c: the backend side of direct server return, in one object because both
 * programs share the reply flow tables (the file keeps the name the project's layout gives
 * it; it holds an XDP program too).
 *   xdp_decap (XDP ingress): accept IPIP and GUE only from the LB nodes and for the VIPs
 *     served here, strip the outer header, rewrite the inner destination (the VIP) to this
 *     backend's own address and record the flow;
 *   tc_egress (TCX egress): replies of recorded flows get the VIP back as their source,
 *     with L3/L4 checksums fixed, and go straight to the client. */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lb_consts.h"
#include "lb_structs.h"
#include "be_maps.h"
#include "parse.h"
#include "csum.h"
#include "gue.h"
#include "icmp_err.h"
#include "frag.h"
#include "misdelivery.h"

/* this backend's own addresses, for inner packets whose family differs from the outer
 * header's (4in6); zero: keep the VIP as the destination (VIP configured on lo) */
volatile const __be32 local_v4 = 0;
volatile const __be32 local_v6[4] = {0, 0, 0, 0};
/* unused by the program: they put the enums into BTF, so bpf2go emits their names */
volatile const enum reason reason_max = REASON_MAX;
volatile const enum lb_limit lb_limit_btf = LIMIT_VIPS;

static __always_inline void be_count(__u32 c, __u64 bytes)
{
	struct counter *s = bpf_map_lookup_elem(&be_stats, &c);

	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
}

static __always_inline void return_count(struct vip_key *vk, __u64 bytes)
{
	struct counter *s = bpf_map_lookup_elem(&return_stats, vk);

	if (!s) {
		struct counter zero = {};

		bpf_map_update_elem(&return_stats, vk, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&return_stats, vk);
		if (!s)
			return;
	}
	s->packets++;
	s->bytes += bytes;
}

/* offset of the L4 checksum field, or -1 when there is none to fix */
static __always_inline int l4_csum_off(__u8 proto)
{
	if (proto == IPPROTO_TCP)
		return offsetof(struct tcphdr, check);
	if (proto == IPPROTO_UDP)
		return offsetof(struct udphdr, check);
	return -1;
}

/* is the outer source one of the LB nodes'? */
static __always_inline int from_lb_v4(__be32 src)
{
	struct lpm_key_v4 k = {.prefixlen = 32, .addr = src};

	return bpf_map_lookup_elem(&lb_sources_v4, &k) != NULL;
}

static __always_inline int from_lb_v6(const __be32 *src)
{
	struct lpm_key_v6 k = {.prefixlen = 128};

	__builtin_memcpy(k.addr, src, sizeof(k.addr));
	return bpf_map_lookup_elem(&lb_sources_v6, &k) != NULL;
}

/* does this backend serve the VIP k names: exactly, every port of its protocol, or all of
 * its address? (k is overwritten) */
static __always_inline int serves(struct vip_key *k)
{
	if (bpf_map_lookup_elem(&served_vips, k))
		return 1;
	k->port = 0;
	if (bpf_map_lookup_elem(&served_vips, k))
		return 1;
	k->proto = 0;
	return bpf_map_lookup_elem(&served_vips, k) != NULL;
}

/* what decap learns of the inner packet before it changes a byte */
struct inner {
	__be16 rport, lport; /* the client's port, the VIP's */
	__u8 proto;
	__u8 syn;
};

/* the inner IPv4 packet at ip, of at most room bytes by the outer header: version 4 (the
 * tunnel said so), no options, unfragmented (the LB sends no fragments), its ports inside
 * it, for a VIP this backend serves. REASON_DECAP on success, else the counter to refuse it by */
static __always_inline int check_inner_v4(struct iphdr *ip, __u32 room, void *data_end,
					  struct inner *in)
{
	struct vip_key vk = {};
	__u32 len;

	if ((void *)(ip + 1) > data_end || *(__u8 *)ip != IPV4_VER_IHL5)
		return REASON_DECAP_MALFORMED;
	len = bpf_ntohs(ip->tot_len);
	if (len < sizeof(*ip) || len > room || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return REASON_DECAP_MALFORMED;
	if (parse_l4(ip + 1, len - sizeof(*ip), data_end, ip->protocol, &in->rport, &in->lport,
		     &in->syn))
		return REASON_DECAP_MALFORMED;
	in->proto = ip->protocol;
	vk.addr.v4 = ip->daddr;
	vk.port = in->lport;
	vk.proto = ip->protocol;
	vk.family = LB_AF_INET;
	return serves(&vk) ? REASON_DECAP : REASON_REFUSED_VIP;
}

static __always_inline int check_inner_v6(struct ipv6hdr *ip6, __u32 room, void *data_end,
					  struct inner *in)
{
	struct vip_key vk = {};
	__u32 len;

	if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
		return REASON_DECAP_MALFORMED;
	len = bpf_ntohs(ip6->payload_len);
	if (sizeof(*ip6) + len > room)
		return REASON_DECAP_MALFORMED;
	if (parse_l4(ip6 + 1, len, data_end, ip6->nexthdr, &in->rport, &in->lport, &in->syn))
		return REASON_DECAP_MALFORMED;
	in->proto = ip6->nexthdr;
	__builtin_memcpy(vk.addr.v6, &ip6->daddr, sizeof(vk.addr.v6));
	vk.port = in->lport;
	vk.proto = ip6->nexthdr;
	vk.family = LB_AF_INET6;
	return serves(&vk) ? REASON_DECAP : REASON_REFUSED_VIP;
}

/* rewrite the inner IPv4 destination (checked by check_inner_v4) to 'to', fixing the IP
 * and L4 checksums in place, and fill the key its replies will carry */
static __always_inline int rewrite_dst_v4(struct iphdr *ip, void *data_end, __be32 to,
					  const struct inner *in, struct reply_key_v4 *k)
{
	__be32 from = ip->daddr;
	void *l4 = ip + 1;

	if (in->proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return PARSE_BAD;
		th->check = csum_replace4(th->check, from, to);
	} else {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return PARSE_BAD;
		if (uh->check) {
			uh->check = csum_replace4(uh->check, from, to);
			if (!uh->check)
				uh->check = 0xffff;
		}
	}
	ip->check = csum_replace4(ip->check, from, to);
	ip->daddr = to;
	k->remote = ip->saddr;
	k->local = to;
	k->rport = in->rport;
	k->lport = in->lport;
	k->proto = in->proto;
	return 0;
}

/* (the L4 header at l4: right after the fixed header, or after a fragment header) */
static __always_inline int rewrite_dst_v6(struct ipv6hdr *ip6, void *l4, void *data_end,
					  const __be32 *to, const struct inner *in,
					  struct reply_key_v6 *k)
{
	__u16 *check;

	if (in->proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return PARSE_BAD;
		check = &th->check;
	} else {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return PARSE_BAD;
		check = &uh->check;
	}
#pragma unroll
	for (int i = 0; i < 4; i++) {
		*check = csum_replace4(*check, ip6->daddr.in6_u.u6_addr32[i], to[i]);
		ip6->daddr.in6_u.u6_addr32[i] = to[i];
	}
	if (in->proto == IPPROTO_UDP && !*check)
		*check = 0xffff; /* zero means "no checksum", which IPv6 UDP may not use */
	__builtin_memcpy(k->remote, &ip6->saddr, sizeof(k->remote));
	__builtin_memcpy(k->local, to, sizeof(k->local));
	k->rport = in->rport;
	k->lport = in->lport;
	k->proto = in->proto;
	return 0;
}

/* record that replies of flow k go out as dv says. Every packet of a flow passes here, so
 * an entry that already says so is left alone (a lookup also keeps it fresh in the LRU),
 * and one that says otherwise is rewritten in place: an update would allocate a new
 * element and free the old one on every packet (measured: ~2 times the cost of decap) */
static __always_inline void record_reply_flow(void *flows, const void *k,
					      const struct reply_val *dv)
{
	struct reply_val *old = bpf_map_lookup_elem(flows, k);

	if (!old) {
		bpf_map_update_elem(flows, k, dv, BPF_ANY);
		return;
	}
	if (old->vip.v6[0] != dv->vip.v6[0] || old->vip.v6[1] != dv->vip.v6[1] ||
	    old->vip.v6[2] != dv->vip.v6[2] || old->vip.v6[3] != dv->vip.v6[3] ||
	    old->vip_port != dv->vip_port || old->family != dv->family)
		*old = *dv;
}

#include "be_edge.h" /* edge packets: ICMP errors about served flows, fragments */

/* where decap's self or self6 is in the frame: the outer destination (0: neither) */
static __always_inline __u32 self_off(int l2len, __be32 self, const __be32 *self6)
{
	if (self)
		return l2len + offsetof(struct iphdr, daddr);
	if (self6)
		return l2len + offsetof(struct ipv6hdr, daddr);
	return 0;
}

/* decap one inner packet (IPv4 when inner_v4) that follows outer_len bytes of outer
 * headers, which say room bytes follow them; the outer header is addressed to 'self' (v4)
 * or 'self6'. The sender was checked against the LB nodes' sources. */
static __always_inline int decap(struct xdp_md *ctx, int l2len, int outer_len, __u32 room,
				 int inner_v4, __be32 self, const __be32 *self6)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct reply_val dv = {};
	struct ethhdr eth;
	struct vlan_hdr vh = {};
	struct inner in = {};
	void *inner = data + l2len + outer_len;
	int c;

	/* edge packets (be_edge.h): ICMP errors about a flow served here, and fragments; the
	 * outer destination is this host's address, unless the families differ (4in6) */
	c = decap_edge(ctx, l2len + outer_len, room, inner_v4, self_off(l2len, self, self6));
	if (c == REASON_DECAP_ICMP_ERROR || c == REASON_DECAP_FRAGMENT)
		goto strip;
	if (c != EDGE_NONE)
		goto refuse;
	if (inner_v4) {
		struct iphdr *ip = inner;
		struct reply_key_v4 k = {};
		__be32 to = self ? self : local_v4;

		c = check_inner_v4(ip, room, data_end, &in);
		if (c != REASON_DECAP)
			goto refuse;
		if ((void *)(ip + 1) > data_end)
			goto bad;
		if (!to)
			to = ip->daddr;
		dv.vip.v4 = ip->daddr;
		if (rewrite_dst_v4(ip, data_end, to, &in, &k))
			goto bad;
		dv.vip_port = k.lport;
		dv.family = LB_AF_INET;
		record_reply_flow(&dsr_flows_v4, &k, &dv);
		if (in.proto == IPPROTO_TCP && !in.syn)
			check_delivery_v4(ctx, &k, &dv, bytes); /* misdelivery.h */
	} else {
		struct ipv6hdr *ip6 = inner;
		struct reply_key_v6 k = {};
		__be32 to[4];

		c = check_inner_v6(ip6, room, data_end, &in);
		if (c != REASON_DECAP)
			goto refuse;
		if ((void *)(ip6 + 1) > data_end)
			goto bad;
		__builtin_memcpy(dv.vip.v6, &ip6->daddr, sizeof(dv.vip.v6));
		if (self6) {
			__builtin_memcpy(to, self6, sizeof(to));
		} else {
			to[0] = local_v6[0];
			to[1] = local_v6[1];
			to[2] = local_v6[2];
			to[3] = local_v6[3];
			if (!(to[0] | to[1] | to[2] | to[3]))
				__builtin_memcpy(to, dv.vip.v6, sizeof(to));
		}
		if (rewrite_dst_v6(ip6, ip6 + 1, data_end, to, &in, &k))
			goto bad;
		dv.vip_port = k.lport;
		dv.family = LB_AF_INET6;
		record_reply_flow(&dsr_flows_v6, &k, &dv);
		if (in.proto == IPPROTO_TCP && !in.syn)
			check_delivery_v6(ctx, &k, &dv, bytes); /* misdelivery.h */
	}
strip:
	/* move the L2 header forward over the outer IP header */
	if (data + sizeof(eth) + sizeof(vh) > data_end)
		goto bad;
	__builtin_memcpy(&eth, data, sizeof(eth));
	if (l2len != sizeof(eth))
		__builtin_memcpy(&vh, data + sizeof(eth), sizeof(vh));
	if (bpf_xdp_adjust_head(ctx, outer_len))
		goto bad;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(eth) + sizeof(vh) > data_end)
		return XDP_DROP;
	if (l2len == sizeof(eth)) {
		eth.h_proto = inner_v4 ? ETH_P_IP_BE : ETH_P_IPV6_BE;
	} else {
		vh.encap_proto = inner_v4 ? ETH_P_IP_BE : ETH_P_IPV6_BE;
		__builtin_memcpy(data + sizeof(eth), &vh, sizeof(vh));
	}
	__builtin_memcpy(data, &eth, sizeof(eth));
	be_count(c, bytes); /* REASON_DECAP, or an edge packet's */
	return XDP_PASS;
bad:
	c = REASON_DECAP_MALFORMED;
refuse:
	be_count(c, bytes);
	return XDP_DROP;
}

/* a tunnelled packet refused before its inner header is read */
static __always_inline int refuse(struct xdp_md *ctx, __u32 c)
{
	be_count(c, frame_len(ctx));
	return XDP_DROP;
}

/* IPIP and GUE to this host are decapsulated when they come from an LB node and carry a
 * well-formed packet for a VIP served here; any other tunnelled packet is dropped and
 * counted by reason; everything else passes to the host untouched. GUE over IPv6 arrives
 * with a zero UDP checksum (RFC 6935 allows it for tunnels): the inner packet carries its
 * own checksums, which the host verifies after decap, and the outer addresses are checked
 * against the LB nodes' sources, the conditions RFC 6936 section 5 sets. */
SEC("xdp")
int xdp_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__be16 proto;
	int l2len;

	l2len = parse_eth(data, data_end, &proto);
	if (l2len < 0)
		return XDP_PASS;
	if (proto == ETH_P_IP_BE) {
		struct iphdr *ip = data + l2len;
		__u32 len, outer = sizeof(*ip);
		int v;

		if ((void *)(ip + 1) > data_end || *(__u8 *)ip != IPV4_VER_IHL5)
			return XDP_PASS;
		if (ip->protocol != IPPROTO_IPIP && ip->protocol != IPPROTO_UDP)
			return XDP_PASS;
		/* a tunnel ends at a unicast address of this host; 0.0.0.0 is no address to
		 * rewrite the inner destination to */
		if (martian_v4(ip->daddr))
			return XDP_PASS;
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return XDP_PASS; /* fragmented outer packet: leave it to the host */
		v = 4;
		if (ip->protocol == IPPROTO_UDP) {
			v = gue_inner(ip + 1, data_end);
			if (v != 4)
				return XDP_PASS; /* no 6in4, nor any other UDP */
			outer += sizeof(struct udphdr);
		}
		len = bpf_ntohs(ip->tot_len);
		if (len < outer || (void *)ip + len > data_end)
			return refuse(ctx, REASON_DECAP_MALFORMED);
		if (!from_lb_v4(ip->saddr))
			return refuse(ctx, REASON_REFUSED_SOURCE);
		return decap(ctx, l2len, outer, len - outer, 1, ip->daddr, NULL);
	}
	if (proto == ETH_P_IPV6_BE) {
		struct ipv6hdr *ip6 = data + l2len;
		__be32 self6[4];
		__u32 len, outer = sizeof(*ip6);
		int v = 0;

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6 ||
		    martian_v6(ip6->daddr.in6_u.u6_addr32))
			return XDP_PASS;
		if (ip6->nexthdr == IPPROTO_IPIP)
			v = 4;
		else if (ip6->nexthdr == IPPROTO_IPV6)
			v = 6;
		else if (ip6->nexthdr == IPPROTO_UDP) {
			v = gue_inner(ip6 + 1, data_end);
			outer += sizeof(struct udphdr);
		}
		if (v != 4 && v != 6)
			return XDP_PASS;
		len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		if (len < outer || (void *)ip6 + len > data_end)
			return refuse(ctx, REASON_DECAP_MALFORMED);
		if (!from_lb_v6(ip6->saddr.in6_u.u6_addr32))
			return refuse(ctx, REASON_REFUSED_SOURCE);
		if (v == 4)
			return decap(ctx, l2len, outer, len - outer, 1, 0, NULL);
		__builtin_memcpy(self6, &ip6->daddr, sizeof(self6));
		return decap(ctx, l2len, outer, len - outer, 0, 0, self6);
	}
	return XDP_PASS;
}

/* replace 4 bytes at off with 'to', fixing the L4 checksum (pseudo header) and, for IPv4,
 * the IP header checksum at ip_check_off (< 0: none) */
static __always_inline int store_addr_word(struct __sk_buff *skb, int off, __be32 from, __be32 to,
					   int l4_check_off, int udp, int ip_check_off)
{
	__u64 flags = BPF_F_PSEUDO_HDR | sizeof(to) | (udp ? BPF_F_MARK_MANGLED_0 : 0);

	if (l4_check_off >= 0 && bpf_l4_csum_replace(skb, l4_check_off, from, to, flags))
		return -1;
	if (ip_check_off >= 0 && bpf_l3_csum_replace(skb, ip_check_off, from, to, sizeof(to)))
		return -1;
	return bpf_skb_store_bytes(skb, off, &to, sizeof(to), 0);
}

static __always_inline int restore_port(struct __sk_buff *skb, int l4off, __be16 from, __be16 to,
					int l4_check_off, int udp)
{
	__u64 flags = sizeof(to) | (udp ? BPF_F_MARK_MANGLED_0 : 0);

	if (from == to)
		return 0;
	if (l4_check_off >= 0 && bpf_l4_csum_replace(skb, l4_check_off, from, to, flags))
		return -1;
	/* source port is the first field of both TCP and UDP headers */
	return bpf_skb_store_bytes(skb, l4off, &to, sizeof(to), 0);
}

#include "be_reply_frag.h" /* edge packets: replies in fragments */

static __always_inline int egress_v4(struct __sk_buff *skb, int l2len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + l2len;
	struct reply_key_v4 k = {};
	struct reply_val *dv;
	struct vip_key vk = {};
	int l4off = l2len + sizeof(*ip), coff;
	__be16 sport;

	__u32 len;
	__u8 syn;

	if ((void *)(ip + 1) > data_end || *(__u8 *)ip != IPV4_VER_IHL5)
		return TCX_NEXT;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) /* edge packets: be_reply_frag.h */
		return egress_frag_v4(skb, l2len);
	/* the packet's length against skb->len, not data_end: a reply's payload may sit in
	 * pages past the linear head */
	len = bpf_ntohs(ip->tot_len);
	if (len < sizeof(*ip) || l2len + len > skb->len ||
	    parse_l4(ip + 1, len - sizeof(*ip), data_end, ip->protocol, &sport, &k.rport, &syn))
		return TCX_NEXT;
	k.remote = ip->daddr;
	k.local = ip->saddr;
	k.lport = sport;
	k.proto = ip->protocol;
	dv = bpf_map_lookup_elem(&dsr_flows_v4, &k);
	if (!dv)
		return TCX_NEXT;
	coff = l4_csum_off(k.proto);
	if (coff >= 0)
		coff += l4off;
	if (store_addr_word(skb, l2len + offsetof(struct iphdr, saddr), k.local, dv->vip.v4, coff,
			    k.proto == IPPROTO_UDP, l2len + offsetof(struct iphdr, check)))
		return TCX_NEXT;
	if (restore_port(skb, l4off, sport, dv->vip_port, coff, k.proto == IPPROTO_UDP))
		return TCX_NEXT;
	vk.addr = dv->vip;
	vk.port = dv->vip_port;
	vk.proto = k.proto;
	vk.family = LB_AF_INET;
	return_count(&vk, skb->len);
	be_count(REASON_RESTORED, skb->len);
	return TCX_NEXT;
}

static __always_inline int egress_v6(struct __sk_buff *skb, int l2len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + l2len;
	struct reply_key_v6 k = {};
	struct reply_val *dv;
	struct vip_key vk = {};
	int l4off = l2len + sizeof(*ip6), coff;
	__be16 sport;
	__be32 vip[4];

	__u32 len;
	__u8 syn;

	if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
		return TCX_NEXT;
	if (ip6->nexthdr == IPPROTO_FRAGMENT) /* edge packets: be_reply_frag.h */
		return egress_frag_v6(skb, l2len);
	len = bpf_ntohs(ip6->payload_len);
	if (l2len + sizeof(*ip6) + len > skb->len ||
	    parse_l4(ip6 + 1, len, data_end, ip6->nexthdr, &sport, &k.rport, &syn))
		return TCX_NEXT;
	__builtin_memcpy(k.remote, &ip6->daddr, sizeof(k.remote));
	__builtin_memcpy(k.local, &ip6->saddr, sizeof(k.local));
	k.lport = sport;
	k.proto = ip6->nexthdr;
	dv = bpf_map_lookup_elem(&dsr_flows_v6, &k);
	if (!dv)
		return TCX_NEXT;
	__builtin_memcpy(vip, dv->vip.v6, sizeof(vip));
	coff = l4_csum_off(k.proto) + l4off;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (store_addr_word(skb, l2len + offsetof(struct ipv6hdr, saddr) + 4 * i,
				    k.local[i], vip[i], coff, 0, -1))
			return TCX_NEXT;
	}
	if (restore_port(skb, l4off, sport, dv->vip_port, coff, 0))
		return TCX_NEXT;
	__builtin_memcpy(vk.addr.v6, vip, sizeof(vip));
	vk.port = dv->vip_port;
	vk.proto = k.proto;
	vk.family = LB_AF_INET6;
	return_count(&vk, skb->len);
	be_count(REASON_RESTORED, skb->len);
	return TCX_NEXT;
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__be16 proto;
	int l2len;

	l2len = parse_eth(data, data_end, &proto);
	if (l2len < 0)
		return TCX_NEXT;
	if (proto == ETH_P_IP_BE)
		return egress_v4(skb, l2len);
	if (proto == ETH_P_IPV6_BE)
		return egress_v6(skb, l2len);
	return TCX_NEXT;
}

char __license[] SEC("license") = "GPL";
