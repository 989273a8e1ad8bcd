// SPDX-License-Identifier: GPL-2.0
/* misdelivery.h: on a backend, TCP packets other than SYN that arrive for a VIP flow this
 * host holds no connection for. They are the packets of broken flows (a connection an LB
 * node sent to another backend than the one that holds it), which the host answers with a
 * reset; with direct server return no other place sees them (docs/ARCHITECTURE.md,
 * "Flow sync"). Counted per VIP in misdelivered. */
#ifndef MISDELIVERY_H
#define MISDELIVERY_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb_consts.h"
#include "lb_structs.h"

/* the socket state of a listener (include/net/tcp_states.h; BPF_TCP_LISTEN in uapi) */
#define MISDELIVERY_TCP_LISTEN 10

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} misdelivered SEC(".maps");

/* a socket for the flow? An established one, a handshake in progress (request socket) or
 * one in TIME_WAIT is; no socket, or only the listener, is not. (Under a SYN flood with
 * syncookies the ACK that ends a handshake finds only the listener too, and counts.) */
static __always_inline int has_socket(struct xdp_md *ctx, struct bpf_sock_tuple *t, __u32 size)
{
	struct bpf_sock *sk = bpf_skc_lookup_tcp(ctx, t, size, BPF_F_CURRENT_NETNS, 0);
	int listener;

	if (!sk)
		return 0;
	listener = sk->state == MISDELIVERY_TCP_LISTEN;
	bpf_sk_release(sk);
	return !listener;
}

static __always_inline void count_misdelivered(const struct reply_val *dv, __u64 bytes)
{
	struct vip_key vk = {};
	struct counter *c;

	vk.addr = dv->vip;
	vk.port = dv->vip_port;
	vk.proto = IPPROTO_TCP;
	vk.family = dv->family;
	c = bpf_map_lookup_elem(&misdelivered, &vk);
	if (!c) {
		struct counter zero = {};

		bpf_map_update_elem(&misdelivered, &vk, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&misdelivered, &vk);
		if (!c)
			return;
	}
	c->packets++;
	c->bytes += bytes;
}

/* a decapsulated TCP packet, not a SYN, of the flow k (as its replies look: remote is the
 * client, local this host after the rewrite) to VIP dv */
static __always_inline void check_delivery_v4(struct xdp_md *ctx, const struct reply_key_v4 *k,
					      const struct reply_val *dv, __u64 bytes)
{
	struct bpf_sock_tuple t = {};

	t.ipv4.saddr = k->remote;
	t.ipv4.daddr = k->local;
	t.ipv4.sport = k->rport;
	t.ipv4.dport = k->lport;
	if (!has_socket(ctx, &t, sizeof(t.ipv4)))
		count_misdelivered(dv, bytes);
}

static __always_inline void check_delivery_v6(struct xdp_md *ctx, const struct reply_key_v6 *k,
					      const struct reply_val *dv, __u64 bytes)
{
	struct bpf_sock_tuple t = {};

	__builtin_memcpy(t.ipv6.saddr, k->remote, sizeof(t.ipv6.saddr));
	__builtin_memcpy(t.ipv6.daddr, k->local, sizeof(t.ipv6.daddr));
	t.ipv6.sport = k->rport;
	t.ipv6.dport = k->lport;
	if (!has_socket(ctx, &t, sizeof(t.ipv6)))
		count_misdelivered(dv, bytes);
}

#endif
