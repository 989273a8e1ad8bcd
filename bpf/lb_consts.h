// SPDX-License-Identifier: GPL-2.0
/* lb_consts.h: sizes, flags and protocol constants shared by the LB and backend programs.
 * The Go side reads the limits from the generated bindings (enum lb_limit), not a copy. */
#ifndef LB_CONSTS_H
#define LB_CONSTS_H

#ifndef MAX_VIPS
#define MAX_VIPS 1024
#endif
#ifndef MAX_BACKENDS
#define MAX_BACKENDS 16384
#endif
/* entries of each flow table (per family) */
#ifndef MAX_FLOWS
#define MAX_FLOWS 262144
#endif
/* entries of each adopted-flow table (per family): flows other LB nodes shared (flowsync.h);
 * allocated as they come, so the bound costs nothing until it is used */
#ifndef MAX_ADOPTED_FLOWS
#define MAX_ADOPTED_FLOWS 262144
#endif
/* the adopted-flow filter: one bit per value of the flow hash's top 20 bits, set while an
 * adopted flow has it, so a miss of another flow skips the adopted maps (whose buckets,
 * 4 MiB, are a cache miss away) for one read of a 128 KiB array */
#define ADOPTED_FILTER_SHIFT 12
#define ADOPTED_FILTER_WORDS ((1U << (32 - ADOPTED_FILTER_SHIFT)) / 64)
/* the SYN flood guard counts new flows per CPU over windows this long */
#define SYN_FLOOD_WINDOW_NS 1000000000ULL

/* the VIP address filter: one bit per hash of a destination address, so traffic for
 * other addresses passes without a hash map lookup */
#define VIP_FILTER_BITS	 65536
#define VIP_FILTER_WORDS (VIP_FILTER_BITS / 64)
#define VIP_FILTER_MUL	 0x9e3779b1U

/* entries of each of a backend's reply flow tables (per family) */
#ifndef MAX_DSR_FLOWS
#define MAX_DSR_FLOWS 262144
#endif
/* entries of each fragment table (per family, LB and backend): datagrams whose fragments
 * are in flight; an entry is needed for microseconds, and the LRU recycles it */
#ifndef MAX_FRAGS
#define MAX_FRAGS 8192
#endif
/* source prefixes a backend accepts tunnelled packets from (per family) */
#define MAX_LB_SOURCES 256

#define ETH_P_IP_BE	0x0008 /* htons(ETH_P_IP) on little-endian */
#define ETH_P_IPV6_BE	0xdd86 /* htons(ETH_P_IPV6) */
#define ETH_P_8021Q_BE	0x0081
#define ETH_P_8021AD_BE 0xa888

#define IP_MF	  0x2000
#define IP_OFFSET 0x1fff
#define IP_DF	  0x4000

#define ENCAP_TTL 64

#ifndef GUE_PORT
#define GUE_PORT 6080 /* default GUE destination port */
#endif

/* health probes through the tunnel: the daemon marks a probe socket with PROBE_MARK | the
 * backend id, and tc_probe encapsulates its packets to that backend */
#define PROBE_MARK	0x4c420000U
#define PROBE_MARK_MASK 0xffff0000U

/* vip_meta.flags */
#define VIP_F_GUE  (1U << 0) /* GUE (UDP) instead of IPIP */
#define VIP_F_QUIC (1U << 1) /* short-header QUIC goes by the server id in its connection id */

/* backend.flags */
#define BE_F_V6	  (1U << 0) /* backend address is IPv6 */
#define BE_F_DOWN (1U << 1) /* health says down: LRU hits on it are ignored */

/* address families in keys */
#define LB_AF_INET  4
#define LB_AF_INET6 6

/* TCX return code (linux 6.6 uapi; Debian 12's headers predate it): let the next program run */
#ifndef TCX_NEXT
#define TCX_NEXT -1
#endif

/* the limits and constants above that the Go side needs, as an enum so that bpf2go emits
 * them (each object holds a variable of this type to put it into BTF) */
enum lb_limit {
	LIMIT_VIPS = MAX_VIPS,
	LIMIT_BACKEND_IDS = MAX_BACKENDS, /* id 0 is never used */
	LIMIT_FLOWS = MAX_FLOWS,
	LIMIT_DSR_FLOWS = MAX_DSR_FLOWS,
	LIMIT_FRAGS = MAX_FRAGS,
	LIMIT_LB_SOURCES = MAX_LB_SOURCES,
	LIMIT_VIP_FILTER_WORDS = VIP_FILTER_WORDS,
	LIMIT_VIP_FILTER_MUL = VIP_FILTER_MUL,
	LIMIT_GUE_PORT = GUE_PORT,
	LIMIT_PROBE_MARK = PROBE_MARK,
	LIMIT_PROBE_MARK_MASK = PROBE_MARK_MASK,
	LIMIT_VIP_F_GUE = VIP_F_GUE,
	LIMIT_VIP_F_QUIC = VIP_F_QUIC,
	LIMIT_BE_F_V6 = BE_F_V6,
	LIMIT_BE_F_DOWN = BE_F_DOWN,
	LIMIT_AF_INET = LB_AF_INET,
	LIMIT_AF_INET6 = LB_AF_INET6,
	LIMIT_ADOPTED_FLOWS = MAX_ADOPTED_FLOWS,
	LIMIT_ADOPTED_FILTER_SHIFT = ADOPTED_FILTER_SHIFT,
	LIMIT_ADOPTED_FILTER_WORDS = ADOPTED_FILTER_WORDS,
};

#endif
