// SPDX-License-Identifier: GPL-2.0
/* quic.h: QUIC connection-ID routing. A QUIC server behind a `quic: true` VIP puts its
 * server id into the connection ids it issues (pkg/quiccid): byte 0 of the id has its top
 * bits 01 (lbd's layout 1), bytes 1-2 are the server id (network order), the rest random.
 * A short-header packet (RFC 9000 17.3: form bit 0, fixed bit 1) carries that id right
 * after its first byte, so it can go to its server whatever address and port the client
 * now sends from. Long headers (Initial, Handshake) carry the client's choice: the ring. */
#ifndef QUIC_H
#define QUIC_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include "lb_consts.h"
#include "lb_structs.h"

#define QUIC_HEADER_FORM_MASK 0xc0
#define QUIC_SHORT_HEADER     0x40 /* form 0 (short), fixed bit 1 */
#define QUIC_CID_LAYOUT_MASK  0xc0
#define QUIC_CID_LAYOUT_1     0x40
#define QUIC_MIN_CID	      8 /* the shortest id lbd's layout issues */

/* the server id in the short header at offset off of the frame (udp payload of len bytes),
 * or 0 when it is no short header in lbd's layout */
static __always_inline __u32 quic_server_id(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *q;

	if (len < 1 + QUIC_MIN_CID || off > 128)
		return 0;
	q = data + off;
	if ((void *)(q + 4) > data_end)
		return 0;
	if ((q[0] & QUIC_HEADER_FORM_MASK) != QUIC_SHORT_HEADER ||
	    (q[1] & QUIC_CID_LAYOUT_MASK) != QUIC_CID_LAYOUT_1)
		return 0;
	return ((__u32)q[2] << 8) | q[3];
}

#endif
