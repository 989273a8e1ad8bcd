// SPDX-License-Identifier: GPL-2.0
/* frag.h: IP fragments as both ends read them. Only a datagram's first fragment carries its
 * ports; the others carry its addresses, IP identification and protocol, the key under which
 * each end remembers what the first fragment told it (lb_edge.h, be_edge.h). */
#ifndef FRAG_H
#define FRAG_H

#include <linux/types.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb_consts.h"

/* the IPv6 fragment header (RFC 8200 4.5); linux/ipv6.h has it only in the kernel's own
 * headers */
struct frag_hdr_v6 {
	__u8 nexthdr; /* the first header of the fragmentable part, the same in every fragment */
	__u8 reserved;
	__be16 frag_off; /* offset in 8-byte units << 3, 2 reserved bits, M (more fragments) */
	__be32 id;
};

#define IP6_FRAG_OFFSET 0xfff8
#define IP6_FRAG_MF	0x0001

/* a later fragment: one that does not start at offset 0 and so carries no ports */
static __always_inline int later_fragment_v4(const struct iphdr *ip)
{
	return !!(ip->frag_off & bpf_htons(IP_OFFSET));
}

static __always_inline int later_fragment_v6(const struct frag_hdr_v6 *fh)
{
	return !!(fh->frag_off & bpf_htons(IP6_FRAG_OFFSET));
}

#endif
