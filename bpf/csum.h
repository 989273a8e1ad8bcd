// SPDX-License-Identifier: GPL-2.0
/* csum.h: Internet checksum helpers (RFC 1071 sums, RFC 1624 incremental updates). */
#ifndef CSUM_H
#define CSUM_H

#include <linux/types.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>

static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* full header checksum of an option-less IPv4 header whose check field is zero */
static __always_inline __u16 ipv4_hdr_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	return csum_fold32(sum);
}

/* checksum after one 32-bit word it covers changed from 'from' to 'to' (RFC 1624 eqn 3);
 * byte order does not matter as long as check and the words are loaded alike */
static __always_inline __u16 csum_replace4(__u16 check, __u32 from, __u32 to)
{
	__u32 sum = (__u16)~check;

	sum += (~from & 0xffff) + (~from >> 16) + (to & 0xffff) + (to >> 16);
	return csum_fold32(sum);
}

/* the same for one 16-bit word */
static __always_inline __u16 csum_replace2(__u16 check, __u16 from, __u16 to)
{
	__u32 sum = (__u16)~check;

	sum += (__u16)~from + to;
	return csum_fold32(sum);
}

/* the largest message csum_bytes sums: a 4 KiB page holds any frame XDP sees without
 * multi-buffer support */
#define CSUM_MAX_BYTES 4096
#define CSUM_CHUNK     64

struct csum_walk {
	struct xdp_md *ctx;
	__u32 off; /* next byte to add, from the frame's start */
	__u32 end;
	__u32 sum;
	int err;
};

/* one bpf_loop round: up to CSUM_CHUNK bytes copied out and added. The buffer is zeroed,
 * so a short last chunk (an odd byte among them) is padded as RFC 1071 asks. */
static long csum_chunk(__u32 i, void *data)
{
	struct csum_walk *w = data;
	__u8 buf[CSUM_CHUNK] = {};
	__u32 n = w->end - w->off;
	__s64 r;

	if (w->off >= w->end)
		return 1;
	if (n > CSUM_CHUNK)
		n = CSUM_CHUNK;
	/* n is 1..CSUM_CHUNK; said so the verifier sees it too (clang drops an n == 0 test
	 * that off < end already rules out) */
	n = ((n - 1) & (CSUM_CHUNK - 1)) + 1;
	if (bpf_xdp_load_bytes(w->ctx, w->off, buf, n)) {
		w->err = 1;
		return 1;
	}
	r = bpf_csum_diff(NULL, 0, (void *)buf, CSUM_CHUNK, w->sum);
	if (r < 0) {
		w->err = 1;
		return 1;
	}
	w->sum = r;
	w->off += n;
	return 0;
}

/* the ones' complement sum of the len bytes at offset off of the frame, added to sum;
 * -1 when len is over CSUM_MAX_BYTES or runs past the frame. Folding the result with
 * csum_fold32 gives 0 for a message whose checksum is right. bpf_loop keeps the verifier's
 * cost the same whatever the length (a plain loop multiplied it by twenty). */
static __always_inline __s64 csum_bytes(struct xdp_md *ctx, __u32 off, __u32 len, __u32 sum)
{
	struct csum_walk w = {.ctx = ctx, .off = off, .end = off + len, .sum = sum};

	if (len > CSUM_MAX_BYTES)
		return -1;
	bpf_loop(CSUM_MAX_BYTES / CSUM_CHUNK, csum_chunk, &w, 0);
	if (w.err || w.off != w.end)
		return -1;
	return w.sum;
}

#endif
