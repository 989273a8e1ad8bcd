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

#endif
