/* lb_consts.h: sizes, flags and counter names shared by the LB and backend programs. */
#ifndef LB_CONSTS_H
#define LB_CONSTS_H

#ifndef MAX_VIPS
#define MAX_VIPS 1024
#endif
#ifndef MAX_BACKENDS
#define MAX_BACKENDS 16384
#endif
/* default LRU size; the daemon may resize the map before load */
#ifndef MAX_FLOWS
#define MAX_FLOWS 262144
#endif
/* largest ring the program will index (the daemon sizes each inner map) */
#ifndef MAX_RING_SIZE
#define MAX_RING_SIZE 1048573
#endif
/* the VIP address filter: one bit per hash of a destination address, so traffic for
 * other addresses passes without a hash map lookup */
#define VIP_FILTER_BITS 65536
#define VIP_FILTER_WORDS (VIP_FILTER_BITS / 64)
#define VIP_FILTER_MUL 0x9e3779b1U

#ifndef MAX_DSR_FLOWS
#define MAX_DSR_FLOWS 262144
#endif
/* source prefixes a backend accepts tunnelled packets from (per family) */
#define MAX_LB_SOURCES 256

#define ETH_P_IP_BE 0x0008   /* htons(ETH_P_IP) on little-endian */
#define ETH_P_IPV6_BE 0xdd86 /* htons(ETH_P_IPV6) */
#define ETH_P_8021Q_BE 0x0081
#define ETH_P_8021AD_BE 0xa888

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IP_DF 0x4000

#define ENCAP_TTL 64

#ifndef GUE_PORT
#define GUE_PORT 6080 /* default GUE destination port */
#endif

/* health probes through the tunnel: the daemon marks a probe socket with PROBE_MARK | the
 * backend id, and tc_probe encapsulates its packets to that backend */
#define PROBE_MARK 0x4c420000U
#define PROBE_MARK_MASK 0xffff0000U

/* vip_meta.flags */
#define VIP_F_GUE (1U << 0) /* GUE (UDP) instead of IPIP */

/* backend.flags */
#define BE_F_V6 (1U << 0)   /* backend address is IPv6 */
#define BE_F_DOWN (1U << 1) /* health says down: LRU hits on it are ignored */

/* address families in keys */
#define LB_AF_INET 4
#define LB_AF_INET6 6

/* what happened to a packet; each packet is counted under exactly one */
enum lb_counter {
	LB_PASS = 0,        /* not for a VIP: handed to the host untouched */
	LB_TX,              /* encapsulated and sent to a backend */
	LB_DROP_MALFORMED,  /* truncated or inconsistent headers (version, lengths), or a bad
			     * echo request checksum */
	LB_DROP_NO_BACKEND, /* VIP has no usable backend */
	LB_DROP_ENCAP,      /* could not grow the packet for the outer header */
	LB_DROP_TOO_BIG,    /* too big once encapsulated, and fragmenting allowed (or no room to answer) */
	LB_PASS_FRAGMENT,   /* IP fragment: not load balanced */
	LB_PROBE_TX,        /* a health probe encapsulated by tc_probe (egress) */
	LB_PROBE_DROP,      /* a marked probe whose backend is gone or whose headers are odd */
	LB_ICMP_ECHO,       /* an echo request to a VIP address, answered here */
	LB_ICMP_TOO_BIG,    /* too big once encapsulated: the sender was told the size that fits */
	LB_DROP_BAD_SOURCE, /* for a VIP, from a source no flow may come from and no answer may go
			     * to: broadcast, multicast, unspecified or loopback, or a group MAC */
	LB_COUNTER_MAX,
};

/* flow table events, counted beside the verdicts */
enum lb_event {
	LB_EV_LRU_HIT = 0,
	LB_EV_LRU_MISS,
	LB_EV_LRU_SKIP_DOWN, /* hit on a backend that is down or gone: re-hashed */
	LB_EV_SYN,
	LB_EV_MAX,
};

/* backend side counters */
enum be_counter {
	BE_DECAP = 0,       /* outer header removed, VIP rewritten, flow recorded */
	BE_DECAP_MALFORMED, /* tunnelled packet with inconsistent headers (versions, lengths): dropped */
	BE_RESTORED,        /* reply source rewritten back to the VIP */
	BE_REFUSED_SOURCE,  /* tunnelled packet from outside the LB nodes' sources: dropped */
	BE_REFUSED_VIP,     /* tunnelled packet for a VIP this backend does not serve: dropped */
	BE_COUNTER_MAX,
};

#endif
