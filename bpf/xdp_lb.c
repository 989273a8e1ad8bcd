// SPDX-License-Identifier: GPL-2.0
/* xdp_lb.c: the LB node's programs, in one object because they share its maps (a second
 * object would have to open the first one's pins before it could load).
 *   xdp_lb (XDP ingress): packets for a VIP are matched to a flow (LRU) or a ring slot,
 *     encapsulated toward the chosen backend and sent back out (XDP_TX) or redirected;
 *     everything else passes to the host untouched.
 *   tc_probe (TCX egress, despite the file's name): the daemon's health probes "through the
 *     tunnel" (sockets marked PROBE_MARK | backend id, connecting to VIP:port) are
 *     encapsulated to that one backend exactly as client traffic is, which needs the
 *     backends map. */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lb_consts.h"
#include "lb_structs.h"
#include "lb_maps.h"
#include "parse.h"
#include "hash.h"
#include "encap.h"
#include "icmp.h"
#include "icmp_err.h"
#include "frag.h"
#include "quic.h"
#include "flowsync.h"

/* load-time configuration, set by the daemon through the spec */
volatile const __u32 hash_seed = 0;
volatile const __u32 syn_flood_threshold = 0; /* new flows per second per CPU; 0: no guard */
volatile const __u32 encap_mtu = 1500;	      /* largest outer L3 packet we may send */
/* unused by the program: they put the enums into BTF, so bpf2go emits their names */
volatile const enum reason reason_max = REASON_MAX;
volatile const enum flow_event event_max = EVENT_MAX;
volatile const enum lb_limit lb_limit_btf = LIMIT_VIPS;

static __always_inline int verdict(struct xdp_md *ctx, __u32 c, int action)
{
	struct counter *s = bpf_map_lookup_elem(&stats, &c);

	if (s) {
		s->packets++;
		s->bytes += frame_len(ctx);
	}
	return action;
}

static __always_inline void event(__u32 e)
{
	__u64 *n = bpf_map_lookup_elem(&events, &e);

	if (n)
		(*n)++;
}

static __always_inline void count(void *map, __u32 id, __u64 bytes)
{
	struct counter *s = bpf_map_lookup_elem(map, &id);

	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
}

static __always_inline int maybe_vip(__u32 bit)
{
	__u32 word = bit / 64;
	__u64 *w = bpf_map_lookup_elem(&vip_filter, &word);

	return w && (*w & (1ULL << (bit % 64)));
}

static __always_inline struct vip_meta *find_vip(struct vip_key *vk)
{
	struct vip_meta *meta = bpf_map_lookup_elem(&vips, vk);
	__u32 zero = 0;
	struct lb_ctl *ctl;

	if (meta)
		return meta;
	ctl = bpf_map_lookup_elem(&lb_ctl, &zero);
	if (!ctl || !ctl->wildcard_vips)
		return NULL;
	vk->port = 0; /* port-wildcard VIP */
	return bpf_map_lookup_elem(&vips, vk);
}

/* a recorded flow's backend, unless it went down or its id was reused (*stale is set) */
static __always_inline struct backend *flow_backend(struct flow_val *fv, __u32 *bid, int *stale)
{
	struct backend *be;

	if (!fv)
		return NULL;
	be = bpf_map_lookup_elem(&backends, &fv->backend_id);
	if (!be || be->gen != fv->gen || (be->flags & BE_F_DOWN)) {
		*stale = 1;
		return NULL;
	}
	*bid = fv->backend_id;
	return be;
}

static __always_inline struct backend *ring_backend(const struct vip_meta *meta, __u32 hash,
						    __u32 *bid)
{
	__u32 slot, *id;
	void *ring;

	if (!meta->ring_size)
		return NULL;
	ring = bpf_map_lookup_elem(&rings, &meta->ring_id);
	if (!ring)
		return NULL;
	slot = hash % meta->ring_size;
	id = bpf_map_lookup_elem(ring, &slot);
	if (!id || !*id)
		return NULL;
	*bid = *id;
	return bpf_map_lookup_elem(&backends, id);
}

/* is addr (family LB_AF_*) a VIP address, whatever its ports? */
static __always_inline int is_vip_addr(const __be32 *addr, int family)
{
	struct vip_key k = {};

	if (family == LB_AF_INET)
		k.addr.v4 = addr[0];
	else
		__builtin_memcpy(k.addr.v6, addr, sizeof(k.addr.v6));
	k.family = family;
	return bpf_map_lookup_elem(&vip_addrs, &k) != NULL;
}

/* the verdict for what an ICMP builder (icmp.h) did; ok is the reason of an answer sent */
static __always_inline int icmp_verdict(struct xdp_md *ctx, int r, __u32 ok, __u32 failed)
{
	if (r == ICMP_BUILT)
		return verdict(ctx, ok, XDP_TX);
	if (r == ICMP_BAD_SOURCE)
		return verdict(ctx, REASON_DROP_BAD_SOURCE, XDP_DROP);
	if (r == ICMP_MALFORMED)
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	return verdict(ctx, failed, XDP_DROP);
}

/* edge packets (lb_edge.h, included after balance(), which they use) */
static __always_inline int lb_icmp_error_v4(struct xdp_md *ctx, __u32 l2len);
static __always_inline int lb_icmp_error_v6(struct xdp_md *ctx, __u32 l2len);

/* ICMP to an IPv4 address: echo requests to a VIP are answered here (operators ping VIPs),
 * errors about a VIP's packet go to the backend of the flow they quote, the rest is the
 * host's */
static __always_inline int lb_icmp_v4(struct xdp_md *ctx, struct iphdr *ip, __u32 l2len,
				      void *data_end)
{
	struct lb_icmp *ic = (void *)(ip + 1);
	__be32 dst = ip->daddr;

	if ((void *)(ic + 1) > data_end)
		return verdict(ctx, REASON_PASS, XDP_PASS);
	if (icmp_error_v4(ic->type)) /* edge packets: lb_edge.h */
		return lb_icmp_error_v4(ctx, l2len);
	if (ic->type != ICMP_TYPE_ECHO || ic->code)
		return verdict(ctx, REASON_PASS, XDP_PASS);
	if (!maybe_vip(vip_filter_bit_v4(dst)) || !is_vip_addr(&dst, LB_AF_INET))
		return verdict(ctx, REASON_PASS, XDP_PASS);
	return icmp_verdict(ctx, echo_reply_v4(ctx, l2len), REASON_ICMP_ECHO,
			    REASON_DROP_MALFORMED);
}

static __always_inline int lb_icmp_v6(struct xdp_md *ctx, struct ipv6hdr *ip6, __u32 l2len,
				      void *data_end)
{
	struct lb_icmp *ic = (void *)(ip6 + 1);
	__be32 dst[4];

	if ((void *)(ic + 1) > data_end)
		return verdict(ctx, REASON_PASS, XDP_PASS);
	if (icmp_error_v6(ic->type)) /* edge packets: lb_edge.h */
		return lb_icmp_error_v6(ctx, l2len);
	if (ic->type != ICMPV6_TYPE_ECHO_REQUEST || ic->code)
		return verdict(ctx, REASON_PASS, XDP_PASS);
	__builtin_memcpy(dst, &ip6->daddr, sizeof(dst));
	if (!maybe_vip(vip_filter_bit_v6(dst)) || !is_vip_addr(dst, LB_AF_INET6))
		return verdict(ctx, REASON_PASS, XDP_PASS);
	return icmp_verdict(ctx, echo_reply_v6(ctx, l2len), REASON_ICMP_ECHO,
			    REASON_DROP_MALFORMED);
}

/* what the family parsers hand the shared flow path */
struct pkt {
	__u32 l2len;
	__u32 l3len; /* the IP packet's length by its header: a trailer in the frame is not ours */
	__u8 tos;    /* IPv4 TOS or IPv6 traffic class, copied to the outer header */
	__u8 df;     /* IPv4 DF; always set for IPv6, which routers never fragment */
	__u8 syn;    /* a TCP SYN without ACK: a new connection */
	__u8 v6;
	__u32 udp_payload; /* UDP: the payload's offset in the frame (0 for TCP) */
};

/* the backend of meta's VIP whose QUIC connection ids carry the server id of the short
 * header in p, unless it is down or gone */
static __always_inline struct backend *quic_backend(struct xdp_md *ctx, const struct pkt *p,
						    __u32 vip_id, __u32 *bid)
{
	__u32 len = p->l3len - (p->udp_payload - p->l2len);
	__u32 sid = quic_server_id(ctx, p->udp_payload, len);
	__u32 key, *id;
	struct backend *be;

	if (!sid)
		return NULL;
	key = vip_id << 16 | sid;
	id = bpf_map_lookup_elem(&quic_servers, &key);
	if (!id)
		return NULL;
	be = bpf_map_lookup_elem(&backends, id);
	if (!be || !be->gen || be->vip_id != vip_id || (be->flags & BE_F_DOWN))
		return NULL;
	*bid = *id;
	return be;
}

/* the flow hash of either family's key */
static __always_inline __u32 flow_hash(const void *fk, int v6)
{
	if (v6)
		return flow_hash_v6(fk, hash_seed);
	return flow_hash_v4(fk, hash_seed);
}

/* a new flow's source must be a unicast host: traffic "from" broadcast, multicast or
 * unspecified addresses is spoofed, and a backend's answer would go to many or none */
static __always_inline int martian_src(const void *fk, int v6)
{
	if (v6)
		return martian_v6(((const struct flow_key_v6 *)fk)->src);
	return martian_v4(((const struct flow_key_v4 *)fk)->src);
}

/* a new flow: the ring's backend for hash, recorded in the flow table (flows, key) */
/* the SYN flood guard: counts this CPU's new flows per second and says whether they are
 * over syn_flood_threshold, in this window or the last. Over it, SYNs go by the ring without
 * entering the flow table, so a flood of spoofed SYNs (whose senders never answer) cannot
 * evict established flows, however long it lasts; a real client's flow is recorded on its
 * first ACK, which misses and enters as usual. */
static __always_inline int syn_flood(void)
{
	struct flood_state *f;
	__u32 zero = 0;
	__u64 now;

	if (!syn_flood_threshold)
		return 0;
	f = bpf_map_lookup_elem(&flood, &zero);
	if (!f)
		return 0;
	now = bpf_ktime_get_coarse_ns(); /* a jiffy's resolution is plenty for a 1 s window */
	if (now - f->window_start >= SYN_FLOOD_WINDOW_NS) {
		f->flooding = f->new_flows > syn_flood_threshold;
		f->window_start = now;
		f->new_flows = 0;
	}
	return ++f->new_flows > syn_flood_threshold || f->flooding;
}

/* a new flow: the ring's backend for hash, recorded in the flow table (flows, key) unless
 * it is a SYN during a flood. known is the flow's entry when it has one (a SYN on a known
 * tuple, a flow whose backend is down or gone): it is rewritten in place, where an update
 * would allocate a new element and free the old one (measured: a SYN on a known tuple cost
 * ~2.7 times a hit that way) */
static __always_inline struct backend *new_flow(const struct vip_meta *meta, __u32 hash,
						void *flows, const void *key, __u32 *bid, int syn,
						struct flow_val *known)
{
	struct backend *be = ring_backend(meta, hash, bid);
	struct flow_val fv;

	if (!be)
		return NULL;
	if (known) {
		if (known->backend_id != *bid || known->gen != be->gen) {
			known->backend_id = *bid;
			known->gen = be->gen;
		}
		return be;
	}
	if (syn_flood() && syn) {
		event(EVENT_SYN_UNRECORDED);
		return be;
	}
	fv.backend_id = *bid;
	fv.gen = be->gen;
	bpf_map_update_elem(flows, key, &fv, BPF_ANY);
	return be;
}

/* a packet that will not fit once encapsulated: the sender hears the size that fits
 * (PMTU discovery) when it forbade fragmenting (IPv6 always does); else it is dropped */
static __always_inline int too_big(struct xdp_md *ctx, const struct pkt *p, __u32 mtu)
{
	int r;

	if (!p->v6 && !p->df)
		return verdict(ctx, REASON_DROP_TOO_BIG, XDP_DROP);
	r = p->v6 ? too_big_v6(ctx, p->l2len, mtu) : too_big_v4(ctx, p->l2len, mtu);
	return icmp_verdict(ctx, r, REASON_ICMP_TOO_BIG, REASON_DROP_TOO_BIG);
}

/* encapsulate the IP packet (p->l3len bytes, IPv4 unless p->v6) toward be, count it and
 * pick the action */
static __always_inline int send(struct xdp_md *ctx, const struct pkt *p, const struct backend *be,
				__u32 bid, __u32 hash)
{
	__u64 bytes = frame_len(ctx);
	int gue = be->vip_flags & VIP_F_GUE;
	__u32 udp = gue ? sizeof(struct udphdr) : 0;
	__u32 outer = udp + ((be->flags & BE_F_V6) ? sizeof(struct ipv6hdr) : sizeof(struct iphdr));
	int err;

	if (p->v6 && !(be->flags & BE_F_V6))
		return verdict(ctx, REASON_DROP_ENCAP, XDP_DROP); /* no 6in4 */
	if (p->l3len + outer > encap_mtu)
		return too_big(ctx, p, encap_mtu - outer);
	/* bytes past the IP packet (Ethernet padding of a short frame, or junk) ride behind the
	 * outer packet, whose length does not cover them, so receivers drop them; unless they
	 * would push the frame past the MTU: then they are cut. Cutting every time would cost
	 * a bpf_xdp_adjust_tail on each padded ACK. */
	if (bytes - p->l2len + outer > encap_mtu && trim_to(ctx, p->l2len, p->l3len))
		return verdict(ctx, REASON_DROP_ENCAP, XDP_DROP);
	if (be->flags & BE_F_V6)
		err = encap_ip6(ctx, p->l2len, be, p->tos, p->l3len,
				p->v6 ? IPPROTO_IPV6 : IPPROTO_IPIP, hash, gue);
	else
		err = encap_4in4(ctx, p->l2len, be, p->tos, p->l3len, gue, hash);
	if (err)
		return verdict(ctx, REASON_DROP_ENCAP, XDP_DROP);
	count(&vip_stats, be->vip_id, bytes);
	count(&backend_stats, bid, bytes);
	if (be->ifindex)
		return verdict(ctx, REASON_TX, bpf_redirect(be->ifindex, 0));
	return verdict(ctx, REASON_TX, XDP_TX);
}

/* the flow path both families share: a packet for VIP vk (its flow key fk in the family's
 * table flows) goes to the backend the flow table remembers, else to the ring's. The VIP
 * first, then the flow: measured here, a flow table miss costs ~230 ns more when its lookup
 * comes first (the ring's cache miss no longer overlaps the bucket's), while a hit saves
 * only ~30 ns by skipping the (hot) VIP lookup. A SYN is a new connection: the ring decides
 * whatever an old entry says. */
static __always_inline int balance(struct xdp_md *ctx, const struct pkt *p, struct vip_key *vk,
				   void *flows, const void *fk)
{
	struct vip_meta *meta;
	struct backend *be = NULL;
	struct flow_val *fv;
	__u32 bid = 0, hash = 0;
	int stale = 0;

	/* the flow first: a hit needs no VIP lookup, since the backend entry carries its VIP's
	 * id and flags, and a VIP's removal clears its backends' entries (their generation no
	 * longer matches). A SYN is a new connection: the ring decides whatever an entry says. */
	fv = bpf_map_lookup_elem(flows, fk);
	if (!p->syn)
		be = flow_backend(fv, &bid, &stale);
	if (be) {
		/* QUIC: a short header goes to the server its connection id names */
		if ((be->vip_flags & VIP_F_QUIC) && p->udp_payload) {
			__u32 qbid;
			struct backend *qbe = quic_backend(ctx, p, be->vip_id, &qbid);

			if (qbe) {
				event(EVENT_QUIC_CID);
				return send(ctx, p, qbe, qbid, flow_hash(fk, p->v6));
			}
		}
		event(EVENT_LRU_HIT);
		/* the hash also picks the outer IPv6 flow label, the GUE source port and an
		 * outer source from a prefix */
		if (p->v6 || (be->flags & BE_F_V6) || (be->vip_flags & VIP_F_GUE) ||
		    encap_src_hashed())
			hash = flow_hash(fk, p->v6);
		return send(ctx, p, be, bid, hash);
	}
	meta = find_vip(vk);
	if (!meta)
		return verdict(ctx, REASON_PASS, XDP_PASS);
	if ((meta->flags & VIP_F_QUIC) && p->udp_payload) {
		be = quic_backend(ctx, p, meta->vip_id, &bid);
		if (be) {
			event(EVENT_QUIC_CID);
			return send(ctx, p, be, bid, flow_hash(fk, p->v6));
		}
	}
	/* only flows from unicast sources enter the table, so a hit needs no such check */
	if (martian_src(fk, p->v6))
		return verdict(ctx, REASON_DROP_BAD_SOURCE, XDP_DROP);
	event(p->syn ? EVENT_SYN : stale ? EVENT_LRU_SKIP_DOWN : EVENT_LRU_MISS);
	hash = flow_hash(fk, p->v6);
	/* flow sync (flowsync.h): a flow another LB node shared keeps the backend it recorded */
	be = p->syn ? NULL : adopted_backend(meta, flows, fk, p->v6, hash, &bid, fv);
	if (!be)
		be = new_flow(meta, hash, flows, fk, &bid, p->syn, fv);
	if (!be)
		return verdict(ctx, REASON_DROP_NO_BACKEND, XDP_DROP);
	return send(ctx, p, be, bid, hash);
}

#include "lb_edge.h" /* edge packets: ICMP errors and fragments of VIP flows */

/* IPv4: an option-less, unfragmented TCP or UDP packet to a VIP is balanced; whatever the
 * ethertype says, the header's own version must be 4, since a GUE backend reads the
 * family from it, and the ports must lie inside the packet its total length describes */
static __always_inline int lb_ipv4(struct xdp_md *ctx, __u32 l2len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + l2len;
	struct flow_key_v4 fk = {};
	struct vip_key vk = {};
	struct pkt p = {.l2len = l2len};

	if ((void *)(ip + 1) > data_end)
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	if (*(__u8 *)ip != IPV4_VER_IHL5) {
		if (ip->version != 4 || ip->ihl < 5)
			return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
		return verdict(ctx, REASON_PASS, XDP_PASS); /* options: not ours to balance */
	}
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) { /* edge packets: lb_edge.h */
		int r = lb_frag_v4(ctx, l2len, &p, &vk, &fk);

		if (r != FRAG_BALANCE)
			return r;
		goto flow;
	}
	if (ip->protocol == IPPROTO_ICMP)
		return lb_icmp_v4(ctx, ip, l2len, data_end);
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return verdict(ctx, REASON_PASS, XDP_PASS);
	if (!maybe_vip(vip_filter_bit_v4(ip->daddr)))
		return verdict(ctx, REASON_PASS, XDP_PASS);

	p.l3len = bpf_ntohs(ip->tot_len);
	if (p.l3len < sizeof(*ip) || (void *)ip + p.l3len > data_end ||
	    parse_l4(ip + 1, p.l3len - sizeof(*ip), data_end, ip->protocol, &fk.sport, &fk.dport,
		     &p.syn))
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	if (ip->protocol == IPPROTO_UDP)
		p.udp_payload = l2len + sizeof(*ip) + sizeof(struct udphdr);
	p.tos = ip->tos;
	p.df = !!(ip->frag_off & bpf_htons(IP_DF));
	fk.src = ip->saddr;
	fk.dst = ip->daddr;
	fk.proto = ip->protocol;
	vk.addr.v4 = ip->daddr;
	vk.port = fk.dport;
	vk.proto = ip->protocol;
	vk.family = LB_AF_INET;
flow:
	return balance(ctx, &p, &vk, &flows_v4, &fk);
}

/* IPv6: TCP or UDP right after the fixed header, or after a fragment header (lb_edge.h);
 * other extension headers are the host's. The version must be 6 and the ports inside the
 * payload length. */
static __always_inline int lb_ipv6(struct xdp_md *ctx, __u32 l2len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6 = data + l2len;
	struct flow_key_v6 fk = {};
	struct vip_key vk = {};
	struct pkt p = {.l2len = l2len, .df = 1, .v6 = 1};
	__u32 len;

	if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	if (ip6->nexthdr == IPPROTO_ICMPV6)
		return lb_icmp_v6(ctx, ip6, l2len, data_end);
	if (ip6->nexthdr == IPPROTO_FRAGMENT) { /* edge packets: lb_edge.h */
		int r = lb_frag_v6(ctx, l2len, &p, &vk, &fk);

		if (r != FRAG_BALANCE)
			return r;
		goto flow;
	}
	if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP)
		return verdict(ctx, REASON_PASS, XDP_PASS);
	__builtin_memcpy(fk.dst, &ip6->daddr, sizeof(fk.dst));
	if (!maybe_vip(vip_filter_bit_v6(fk.dst)))
		return verdict(ctx, REASON_PASS, XDP_PASS);

	len = bpf_ntohs(ip6->payload_len);
	if ((void *)(ip6 + 1) + len > data_end ||
	    parse_l4(ip6 + 1, len, data_end, ip6->nexthdr, &fk.sport, &fk.dport, &p.syn))
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	p.l3len = sizeof(*ip6) + len;
	if (ip6->nexthdr == IPPROTO_UDP)
		p.udp_payload = l2len + sizeof(*ip6) + sizeof(struct udphdr);
	p.tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	__builtin_memcpy(fk.src, &ip6->saddr, sizeof(fk.src));
	fk.proto = ip6->nexthdr;
	__builtin_memcpy(vk.addr.v6, fk.dst, sizeof(vk.addr.v6));
	vk.port = fk.dport;
	vk.proto = ip6->nexthdr;
	vk.family = LB_AF_INET6;
flow:
	return balance(ctx, &p, &vk, &flows_v6, &fk);
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__be16 proto;
	int l2len;

	l2len = parse_eth(data, data_end, &proto);
	if (l2len < 0)
		return verdict(ctx, REASON_DROP_MALFORMED, XDP_DROP);
	if (proto == ETH_P_IP_BE)
		return lb_ipv4(ctx, l2len);
	if (proto == ETH_P_IPV6_BE)
		return lb_ipv6(ctx, l2len);
	return verdict(ctx, REASON_PASS, XDP_PASS);
}

static __always_inline int probe_verdict(struct __sk_buff *skb, __u32 c, int action)
{
	struct counter *s = bpf_map_lookup_elem(&stats, &c);

	if (s) {
		s->packets++;
		s->bytes += skb->len;
	}
	return action;
}

SEC("tc")
int tc_probe(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct iphdr outer = {};
	struct backend *be;
	__u32 id;

	if ((skb->mark & PROBE_MARK_MASK) != PROBE_MARK)
		return TCX_NEXT;
	id = skb->mark & ~PROBE_MARK_MASK;
	be = bpf_map_lookup_elem(&backends, &id);
	/* IPv4 probes to IPv4 backends: what the daemon marks */
	if (!be || !be->gen || (be->flags & BE_F_V6) || (void *)(ip + 1) > data_end ||
	    eth->h_proto != ETH_P_IP_BE || *(__u8 *)ip != IPV4_VER_IHL5)
		return probe_verdict(skb, REASON_PROBE_DROP, TC_ACT_SHOT);

	outer.version = 4;
	outer.ihl = 5;
	outer.tos = ip->tos;
	outer.tot_len = bpf_htons(bpf_ntohs(ip->tot_len) + sizeof(outer));
	outer.frag_off = bpf_htons(IP_DF);
	outer.ttl = ENCAP_TTL;
	outer.protocol = IPPROTO_IPIP;
	outer.saddr = ip->saddr; /* the probe's own source: replies come back to this node */
	outer.daddr = be->addr.v4;
	outer.check = ipv4_hdr_csum(&outer);

	/* room for the outer header after the MAC header; the kernel keeps the inner headers'
	 * offsets (and a partial checksum) valid */
	if (bpf_skb_adjust_room(skb, sizeof(outer), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
		return probe_verdict(skb, REASON_PROBE_DROP, TC_ACT_SHOT);
	if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &outer, sizeof(outer), 0) ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), be->dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), be->smac, ETH_ALEN, 0))
		return probe_verdict(skb, REASON_PROBE_DROP, TC_ACT_SHOT);
	return probe_verdict(skb, REASON_PROBE_TX, TCX_NEXT);
}

char __license[] SEC("license") = "GPL";
