package dataplane

// The data path's limits and constants, read from bpf/lb_consts.h through the generated
// bindings (enum lb_limit): the C headers are their one source.
const (
	// MaxVIPs is how many VIPs the data path holds.
	MaxVIPs = int(lbLbLimitLIMIT_VIPS)
	// backendIDs is the size of the backends map; id 0 is never used.
	backendIDs = uint32(lbLbLimitLIMIT_BACKEND_IDS)
	// MaxBackends is how many {VIP, backend} pairs the data path holds, over all VIPs.
	MaxBackends = int(backendIDs) - 1
	// MaxLBSources is how many source prefixes per family a backend host accepts.
	MaxLBSources = int(lbLbLimitLIMIT_LB_SOURCES)
	// GUEPort is the UDP destination port of GUE packets; backends decapsulate what
	// arrives on it.
	GUEPort = uint16(lbLbLimitLIMIT_GUE_PORT)
	// ProbeMarkBase | backend id (the low 16 bits) is the socket mark that makes tc_probe
	// encapsulate a probe's packets to that backend.
	ProbeMarkBase = uint32(lbLbLimitLIMIT_PROBE_MARK)
	ProbeMarkMask = uint32(lbLbLimitLIMIT_PROBE_MARK_MASK)

	// maxFrags is the entries of each fragment table: datagrams in fragments whose later
	// fragments are still to come (bpf/lb_edge.h, bpf/be_edge.h)
	maxFrags = int(lbLbLimitLIMIT_FRAGS)

	vipFilterWords = int(lbLbLimitLIMIT_VIP_FILTER_WORDS)
	vipFilterMul   = uint32(lbLbLimitLIMIT_VIP_FILTER_MUL)
	vipFlagGUE     = uint32(lbLbLimitLIMIT_VIP_F_GUE)
	vipFlagQUIC    = uint32(lbLbLimitLIMIT_VIP_F_QUIC)
	beFlagV6       = uint32(lbLbLimitLIMIT_BE_F_V6)
	beFlagDown     = uint32(lbLbLimitLIMIT_BE_F_DOWN)
	afInet         = uint8(lbLbLimitLIMIT_AF_INET)
	afInet6        = uint8(lbLbLimitLIMIT_AF_INET6)
)
