// SPDX-License-Identifier: GPL-2.0
/* gue.h: GUE variant 1 ("direct IP", draft-ietf-intarea-gue): a UDP header to gue_port,
 * then the inner IP packet, whose version bits stand in for a GUE header. The LB writes
 * it (push_gue), the backend reads it (gue_inner). */
#ifndef GUE_H
#define GUE_H

#include <linux/types.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb_consts.h"

/* GUE's UDP destination port, host order, set at load (default GUE_PORT) */
volatile const __u16 gue_port = GUE_PORT;

/* the UDP header of a GUE packet of payload_len bytes. The source port comes from the flow
 * hash, in the ephemeral range, so a backend's NIC spreads flows over its receive queues;
 * the checksum is zero, since the inner packet carries its own (see xdp_decap on IPv6). */
static __always_inline void push_gue(struct udphdr *uh, __u16 payload_len, __u32 hash)
{
	uh->source = bpf_htons(0xc000 | (hash & 0x3fff));
	uh->dest = bpf_htons(gue_port);
	uh->len = bpf_htons(payload_len + sizeof(*uh));
	uh->check = 0;
}

/* the IP version inside a GUE packet whose UDP header is at l4, or 0 when it is not GUE */
static __always_inline int gue_inner(void *l4, void *data_end)
{
	struct udphdr *uh = l4;
	__u8 *ver = (void *)(uh + 1);

	if ((void *)(ver + 1) > data_end || uh->dest != bpf_htons(gue_port))
		return 0;
	return *ver >> 4;
}

#endif
