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

/* the largest message whose checksum csum_bytes sums: a 4 KiB page holds any frame XDP
 * sees without multi-buffer support */
#define CSUM_MAX_BYTES 4096

/* adds the len bytes at p (all inside the frame, which ends at data_end) to sum as 16-bit
 * words loaded little-endian, an odd last byte padded with zero (RFC 1071); returns -1 when
 * len is over CSUM_MAX_BYTES or runs past the frame. Folding the result with csum_fold32
 * gives 0 for a message whose checksum is right. 16 bytes a round keeps the verifier's
 * walk of the loop short. */
static __always_inline __s64 csum_bytes(const void *p, __u32 len, const void *data_end, __u64 sum)
{
	const __u32 *w = p;
	const __u8 *b;

	if (len > CSUM_MAX_BYTES)
		return -1;
#pragma clang loop unroll(disable)
	for (int i = 0; i < CSUM_MAX_BYTES / 16; i++) {
		const __u32 *next = w + 4;

		if (len < 16)
			break;
		/* keep clang from turning the bound into arithmetic on data_end, which the
		 * verifier refuses (clang 19, linux 6.18) */
		asm volatile("" : "+r"(next));
		if ((const void *)next > data_end)
			return -1;
		sum += (__u64)w[0] + w[1] + w[2] + w[3];
		w = next;
		len -= 16;
	}
#pragma unroll
	for (int i = 0; i < 3; i++) {
		const __u32 *next = w + 1;

		if (len < 4)
			break;
		asm volatile("" : "+r"(next));
		if ((const void *)next > data_end)
			return -1;
		sum += *w;
		w = next;
		len -= 4;
	}
	b = (const __u8 *)w;
	if (len >= 2) {
		if ((const void *)(b + 2) > data_end)
			return -1;
		sum += *(const __u16 *)b;
		b += 2;
		len -= 2;
	}
	if (len) {
		if ((const void *)(b + 1) > data_end)
			return -1;
		sum += *b;
	}
	/* 64 bits of sum folded to 32 keep every carry */
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	return (__s64)sum;
}

#endif
