// Package testbed builds a fleet of hosts in network namespaces on one
// machine and tears it down: a switch namespace with a Linux bridge, and a
// client, LB nodes and backends each joined to the bridge by a veth pair.
// With Options.Router, the client sits behind a router namespace instead,
// which spreads flows to a VIP over the LB nodes by ECMP, as an upstream
// router does.
//
// Tests, `lbd demo` and the benchmarks share it. Every namespace and
// temporary directory carries a random per-run ID, and so does every link
// outside a host's own namespace (eth0, eth1 inside it), so a leftover of a
// killed run never collides with the next one; Cleanup removes such
// leftovers.
//
// The package does not import testing, so lbd links it for the demo without
// test code. Tests build a fleet with testbedtest.New, which skips them when
// not root and closes the fleet at the end of the test:
//
//	f := testbedtest.New(t, testbed.Options{LBs: 2, Backends: 3})
//	f.RouteVIP(netip.MustParsePrefix("198.19.0.0/24"))
//	lb, _ := f.Start(f.LBs[0], lbdBinary, "run", "--config", cfg, "--pin-dir", f.PinDir)
//	lb.WaitForLog("ready", 10*time.Second)
//	resp, err := f.Client.HTTPClient(2*time.Second).Get("http://198.19.0.1/")
//
// # Topology and addresses
//
// Without a router (the default), one L2 segment, Net4 and Net6, on the
// bridge; every host's eth0 has the same last number in both families:
//
//	client      198.18.0.1    2001:db8::1     eth0, MTU 1500
//	LB i        198.18.0.2+i  2001:db8::2+i   eth0, MTU 1600 (i < 8)
//	backend i   198.18.0.11+i 2001:db8::11+i  eth0, MTU 1600 (i < 200)
//
// The client reaches a VIP through one LB node: RouteVIP (or Host.RouteVia)
// puts a route on the client; backends answer the client directly on the
// segment.
//
// With Options.Router, the client has a segment of its own, ClientNet4 and
// ClientNet6, a veth to the router namespace, and the router takes the
// client's old place on the bridge:
//
//	client      198.18.1.2    2001:db8:0:1::2  eth0, MTU 1500; default route via the router
//	router      198.18.1.1    2001:db8:0:1::1  eth1 (client leg), MTU 1500
//	            198.18.0.1    2001:db8::1      eth0 (bridge leg), MTU 1600
//	LB i        198.18.0.2+i  2001:db8::2+i    eth0, MTU 1600; route to the client segment via the router
//	backend i   198.18.0.11+i 2001:db8::11+i   eth0, MTU 1600; route to the client segment via the router
//
// The router forwards (IPv4 and IPv6, loose rp_filter, no ICMP redirects)
// and hashes multipath routes by 5-tuple in both families: policy 3, the
// custom fields, set to addresses, protocol and ports. Not policy 1, which
// here hashes the sending socket's random txhash rather than the headers
// (see routerSysctls). RouteVIP puts a multipath route to a VIP prefix on it,
// one nexthop per LB node, so new flows spread over the nodes and a given
// flow always takes the same one. Backends answer the client through the
// router, never through an LB (direct server return). The router only
// forwards in the kernel: it needs no XDP program.
//
// Instead of RouteVIP's static routes, StartBIRD runs BIRD 2 on the router
// with configs/bird.conf, its LB node sessions written for the fleet: the LB
// nodes announce the VIPs over BGP and BIRD installs one multipath route per
// VIP. NextHops reads that route's next hops through netlink, FlowNextHop the
// one the router picks for a given flow.
//
// With Options.PointToPoint, there is no switch: two veths join the client to
// lb0 and lb0 to be0, IPv4 only (the throughput benchmark's gen ─ lb ─ sink):
//
//	client      198.18.1.2    eth0, MTU 1500
//	lb0         198.18.1.1    eth1 (client leg), MTU 1500
//	            198.18.0.2    eth0 (backend leg), MTU 1600
//	be0         198.18.0.11   eth0, MTU 1600
//
// There are no routes and lb0 does not forward: a packet crosses lb0 only by
// the XDP programs the user attaches (no XDP_PASS ones either: XDP_TX or a
// redirect into a veth needs an XDP program on the receiving end, and that is
// the user's too).
//
// Take VIPs from elsewhere in 198.18.0.0/15 and 2001:db8::/32, e.g.
// 198.19.0.0/24 and 2001:db8:1::/64.
//
// # Facts of the kernel (Linux 6.18) the fleet is built around
//
//   - XDP_TX on a veth reaches the peer only if the peer has an XDP program:
//     the switch-side end of every LB veth gets an XDP_PASS one. What an LB
//     sends back with XDP_TX toward the router takes the same way.
//   - CHECKSUM_PARTIAL does not survive XDP on veth: the client's TX
//     checksum offload (and so TSO/GSO) is off. The router forwards the
//     client's packets as they are, checksums complete.
//   - `ip netns exec` remounts /sys, so PinDir is a bpffs in a temporary
//     directory of the host mount namespace, not under /sys/fs/bpf.
//   - A veth drops what it sends until the kernel's linkwatch work has run
//     (up to a second after "link up"): New waits for every port to be
//     operationally up, so the first SYN is not lost.
package testbed
