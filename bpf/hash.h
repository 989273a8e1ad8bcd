// SPDX-License-Identifier: GPL-2.0
/* hash.h: the flow hash. Seeded from config so every LB node picks the same ring slot;
 * internal/dataplane/hash.go computes the same function in Go. */
#ifndef HASH_H
#define HASH_H

#include <linux/types.h>
#include "lb_consts.h"
#include "lb_structs.h"

#define LB_HASH_INIT 0x9e3779b9U

static __always_inline __u32 rol32(__u32 w, unsigned int s)
{
	return (w << s) | (w >> (32 - s));
}

/* three words mixed with Bob Jenkins' lookup3 final() avalanche */
static __always_inline __u32 lb_hash3(__u32 a, __u32 b, __u32 c, __u32 seed)
{
	a += LB_HASH_INIT + seed;
	b += LB_HASH_INIT + seed;
	c += seed;
	/* clang-format off: lookup3's rounds read best one to a line */
	c ^= b;
	c -= rol32(b, 14);
	a ^= c;
	a -= rol32(c, 11);
	b ^= a;
	b -= rol32(a, 25);
	c ^= b;
	c -= rol32(b, 16);
	a ^= c;
	a -= rol32(c, 4);
	b ^= a;
	b -= rol32(a, 14);
	c ^= b;
	c -= rol32(b, 24);
	/* clang-format on */
	return c;
}

/* words are the key's bytes loaded little-endian, as the BPF target does */
static __always_inline __u32 flow_hash_v4(const struct flow_key_v4 *k, __u32 seed)
{
	__u32 ports = ((__u32)k->dport << 16) | k->sport;

	return lb_hash3(k->src, k->dst, ports, seed ^ k->proto);
}

static __always_inline __u32 flow_hash_v6(const struct flow_key_v6 *k, __u32 seed)
{
	__u32 ports = ((__u32)k->dport << 16) | k->sport;
	__u32 h;

	h = lb_hash3(k->src[0], k->src[1], k->src[2], seed);
	h = lb_hash3(k->src[3], k->dst[0], k->dst[1], h);
	return lb_hash3(k->dst[2], k->dst[3], ports, h ^ k->proto);
}

/* the vip_filter bit of a destination address (words loaded little-endian; the daemon
 * computes the same in Go) */
static __always_inline __u32 vip_filter_bit_v4(__u32 a)
{
	return (a * VIP_FILTER_MUL) >> 16;
}

static __always_inline __u32 vip_filter_bit_v6(const __u32 *a)
{
	return vip_filter_bit_v4(a[0] ^ a[1] ^ a[2] ^ a[3]);
}

#endif
