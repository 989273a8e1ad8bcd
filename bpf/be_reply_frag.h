// SPDX-License-Identifier: GPL-2.0
/* be_reply_frag.h: tc_egress's path for the replies this host's kernel fragments (a UDP
 * answer larger than the path MTU). The first fragment carries the ports: it is looked up
 * and given the VIP back like a whole reply, and its datagram remembered under {this host,
 * the client, IP id, protocol}; the later fragments, which carry no ports, take the same
 * VIP as their source, or the client could never reassemble the datagram.
 * Included by tc_egress.c before egress_v4(), whose helpers it uses. */
#ifndef BE_REPLY_FRAG_H
#define BE_REPLY_FRAG_H

#include "frag.h"

/* a reply (or a fragment of one) was given the VIP of dv back: count it */
static __always_inline void restored(struct __sk_buff *skb, const struct reply_val *dv, __u8 proto)
{
	struct vip_key vk = {};

	vk.addr = dv->vip;
	vk.port = dv->vip_port;
	vk.proto = proto;
	vk.family = dv->family;
	return_count(&vk, skb->len);
	be_count(REASON_RESTORED, skb->len);
}

/* an IPv4 fragment of a reply (the caller checked the header) */
static __always_inline int egress_frag_v4(struct __sk_buff *skb, int l2len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + l2len;
	int l4off = l2len + sizeof(*ip), coff;
	struct frag_key_v4 key = {};
	struct reply_key_v4 k = {};
	struct reply_val *dv, v;
	__be16 sport;
	__u32 len;
	__u8 syn;

	if ((void *)(ip + 1) > data_end)
		return TCX_NEXT;
	len = bpf_ntohs(ip->tot_len);
	if (len < sizeof(*ip) || l2len + len > skb->len)
		return TCX_NEXT;
	key.src = ip->saddr;
	key.dst = ip->daddr;
	key.id = ip->id;
	key.proto = ip->protocol;
	if (later_fragment_v4(ip)) {
		dv = bpf_map_lookup_elem(&dsr_reply_frags_v4, &key);
		if (!dv ||
		    store_addr_word(skb, l2len + offsetof(struct iphdr, saddr), key.src, dv->vip.v4,
				    -1, 0, l2len + offsetof(struct iphdr, check)))
			return TCX_NEXT;
		restored(skb, dv, key.proto);
		return TCX_NEXT;
	}
	if (parse_l4(ip + 1, len - sizeof(*ip), data_end, key.proto, &sport, &k.rport, &syn))
		return TCX_NEXT;
	k.remote = key.dst;
	k.local = key.src;
	k.lport = sport;
	k.proto = key.proto;
	dv = bpf_map_lookup_elem(&dsr_flows_v4, &k);
	if (!dv)
		return TCX_NEXT;
	v = *dv;
	bpf_map_update_elem(&dsr_reply_frags_v4, &key, &v, BPF_ANY);
	coff = l4_csum_off(k.proto) + l4off;
	if (store_addr_word(skb, l2len + offsetof(struct iphdr, saddr), k.local, v.vip.v4, coff,
			    k.proto == IPPROTO_UDP, l2len + offsetof(struct iphdr, check)) ||
	    restore_port(skb, l4off, sport, v.vip_port, coff, k.proto == IPPROTO_UDP))
		return TCX_NEXT;
	restored(skb, &v, k.proto);
	return TCX_NEXT;
}

/* an IPv6 reply whose first extension header is a fragment header */
static __always_inline int egress_frag_v6(struct __sk_buff *skb, int l2len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + l2len;
	struct frag_hdr_v6 *fh = (void *)(ip6 + 1);
	int l4off = l2len + sizeof(*ip6) + sizeof(*fh), coff = -1;
	int saddr = l2len + offsetof(struct ipv6hdr, saddr);
	struct frag_key_v6 key = {};
	struct reply_key_v6 k = {};
	struct reply_val *dv, v;
	__be16 sport = 0;
	__u32 len;
	__u8 syn;

	if ((void *)(fh + 1) > data_end)
		return TCX_NEXT;
	len = bpf_ntohs(ip6->payload_len);
	if (len < sizeof(*fh) || l2len + sizeof(*ip6) + len > skb->len)
		return TCX_NEXT;
	__builtin_memcpy(key.src, &ip6->saddr, sizeof(key.src));
	__builtin_memcpy(key.dst, &ip6->daddr, sizeof(key.dst));
	key.id = fh->id;
	key.proto = fh->nexthdr;
	if (later_fragment_v6(fh)) {
		dv = bpf_map_lookup_elem(&dsr_reply_frags_v6, &key);
		if (!dv)
			return TCX_NEXT;
		v = *dv;
	} else {
		if (parse_l4(fh + 1, len - sizeof(*fh), data_end, key.proto, &sport, &k.rport,
			     &syn))
			return TCX_NEXT;
		__builtin_memcpy(k.remote, key.dst, sizeof(k.remote));
		__builtin_memcpy(k.local, key.src, sizeof(k.local));
		k.lport = sport;
		k.proto = key.proto;
		dv = bpf_map_lookup_elem(&dsr_flows_v6, &k);
		if (!dv)
			return TCX_NEXT;
		v = *dv;
		bpf_map_update_elem(&dsr_reply_frags_v6, &key, &v, BPF_ANY);
		coff = l4_csum_off(k.proto) + l4off;
	}
	/* a later fragment has no L4 checksum to fix (coff < 0) */
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (store_addr_word(skb, saddr + 4 * i, key.src[i], v.vip.v6[i], coff, 0, -1))
			return TCX_NEXT;
	}
	if (coff >= 0 && restore_port(skb, l4off, sport, v.vip_port, coff, 0))
		return TCX_NEXT;
	restored(skb, &v, key.proto);
	return TCX_NEXT;
}

#endif
