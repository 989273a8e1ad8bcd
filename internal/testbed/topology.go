package testbed

import (
	"fmt"
	"maps"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
)

const (
	// ClientMTU is the client's MTU; everything else gets FabricMTU, which
	// leaves room for the outer header the LB pushes.
	ClientMTU = 1500
	FabricMTU = 1600

	// clientLegLink is the leg on the client's segment of the host the
	// client's veth starts in: the router (whose leg on the bridge is eth0,
	// like every other host's Link), or lb0 in a point-to-point fleet.
	clientLegLink = "eth1"
)

func (f *Fleet) buildSwitch() error {
	sw := &Host{Name: "switch", NS: f.nsName("switch"), Link: f.linkName("br"), fleet: f, ns: -1}
	f.Switch = sw
	ns, err := newNamedNS(sw.NS)
	if err != nil {
		return fmt.Errorf("netns %s: %w", sw.NS, err)
	}
	sw.ns = ns
	// No IPv6 on the switch: its ports would otherwise send router
	// solicitations and MLD reports into the hosts' counters.
	if err := sw.setSysctls(map[string]string{
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
	}); err != nil {
		return err
	}
	nh, err := sw.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	if err := loUp(nh); err != nil {
		return err
	}
	off := false
	la := netlink.NewLinkAttrs()
	la.Name = sw.Link
	la.MTU = FabricMTU
	br := &netlink.Bridge{LinkAttrs: la, MulticastSnooping: &off}
	if err := nh.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", sw.Link, err)
	}
	l, err := nh.LinkByName(sw.Link)
	if err != nil {
		return err
	}
	if err := nh.LinkSetUp(l); err != nil {
		return fmt.Errorf("bridge up: %w", err)
	}
	sw.MAC = l.Attrs().HardwareAddr
	sw.Ifindex = l.Attrs().Index
	return nil
}

// buildHost makes h's namespace and joins it to h.up: the bridge, or for
// the client of a fleet with a router, the router's client leg. In a
// point-to-point fleet, both the client and be0 join lb0, which joins nothing.
func (f *Fleet) buildHost(h *Host) error {
	ns, err := newNamedNS(h.NS)
	if err != nil {
		return fmt.Errorf("netns %s: %w", h.NS, err)
	}
	h.ns = ns
	// Set before eth0 exists so that it inherits the defaults.
	sysctls := map[string]string{
		"net/ipv4/conf/all/rp_filter":                "2",
		"net/ipv4/conf/default/rp_filter":            "2",
		"net/ipv6/conf/all/accept_dad":               "0",
		"net/ipv6/conf/default/accept_dad":           "0",
		"net/ipv6/conf/default/accept_ra":            "0",
		"net/ipv6/conf/default/router_solicitations": "0",
	}
	if h == f.Router {
		maps.Copy(sysctls, routerSysctls)
	}
	if f.opts.PointToPoint {
		// No IPv6: nothing but the measured traffic on the links (no
		// neighbour discovery, no MLD reports).
		sysctls["net/ipv6/conf/all/disable_ipv6"] = "1"
		sysctls["net/ipv6/conf/default/disable_ipv6"] = "1"
	}
	if err := h.setSysctls(sysctls); err != nil {
		return err
	}

	nh, err := h.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	if err := loUp(nh); err != nil {
		return err
	}
	if h.up == nil {
		return nil // its links come with the veths of the hosts that join it
	}

	uh, err := h.up.Netlink()
	if err != nil {
		return err
	}
	defer uh.Close()
	mtu := FabricMTU
	if h == f.Client {
		mtu = ClientMTU
	}
	la := netlink.NewLinkAttrs()
	la.Name = h.Peer
	la.MTU = mtu // the router's client leg
	if h.up == f.Switch {
		la.MasterIndex = f.Switch.Ifindex
		la.MTU = FabricMTU
	}
	queues := runtime.NumCPU() // XDP on veth wants as many queues as CPUs
	la.NumTxQueues, la.NumRxQueues = queues, queues
	veth := &netlink.Veth{
		LinkAttrs:       la,
		PeerName:        h.Link,
		PeerNamespace:   netlink.NsFd(int(h.ns)),
		PeerTxQLen:      -1,
		PeerMTU:         uint32(mtu),
		PeerNumTxQueues: uint32(queues),
		PeerNumRxQueues: uint32(queues),
	}
	if err := uh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/%s: %w", h.Peer, h.Link, err)
	}
	peer, err := uh.LinkByName(h.Peer)
	if err != nil {
		return err
	}
	if h.up != f.Switch {
		// The up host's leg: its own address on h's segment, or .1 on the
		// client's segment.
		for _, a := range []netip.Addr{h.up.addrOn(h.Addr), h.up.addrOn(h.Addr6)} {
			if err := addAddr(uh, peer, a); err != nil {
				return fmt.Errorf("%s: %w", h.up.Name, err)
			}
		}
	}
	if err := uh.LinkSetUp(peer); err != nil {
		return fmt.Errorf("%s up: %w", h.Peer, err)
	}

	l, err := nh.LinkByName(h.Link)
	if err != nil {
		return err
	}
	for _, a := range []netip.Addr{h.Addr, h.Addr6} {
		if err := addAddr(nh, l, a); err != nil {
			return err
		}
	}
	if err := nh.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s up: %w", h.Link, err)
	}
	return h.readLink()
}

// readLink sets h.MAC and h.Ifindex from h.Link.
func (h *Host) readLink() error {
	nh, err := h.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	l, err := nh.LinkByName(h.Link)
	if err != nil {
		return fmt.Errorf("%s: %w", h.NS, err)
	}
	h.MAC = l.Attrs().HardwareAddr
	h.Ifindex = l.Attrs().Index
	return nil
}

// routerSysctls make the router namespace a router: it forwards in both
// families, sends no ICMP redirects to hosts that could reach each other
// directly on the bridge, and hashes multipath routes by 5-tuple.
//
// By 5-tuple means policy 3 with the fields source and destination
// address, protocol, source and destination port (0x37 = 55), not policy
// 1: policy 1 takes a packet's L4 hash as it is when it has one, and a
// packet from a socket in another namespace of this machine carries that
// socket's random sk_txhash across the veth. Under policy 1 the same 5-tuple
// lands on a different LB node from one connection to the next, and a
// flow moves to another node when TCP picks a new txhash on a retransmit
// timeout. A real router hashes the headers (or a NIC's RSS hash of them);
// policy 3 hashes the headers, whatever the skb carries.
var routerSysctls = map[string]string{
	"net/ipv4/ip_forward":                  "1",
	"net/ipv6/conf/all/forwarding":         "1",
	"net/ipv6/conf/default/forwarding":     "1",
	"net/ipv4/conf/all/send_redirects":     "0",
	"net/ipv4/conf/default/send_redirects": "0",
	"net/ipv4/fib_multipath_hash_policy":   "3",
	"net/ipv4/fib_multipath_hash_fields":   "55",
	"net/ipv6/fib_multipath_hash_policy":   "3",
	"net/ipv6/fib_multipath_hash_fields":   "55",
}

func loUp(nh *netlink.Handle) error {
	lo, err := nh.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := nh.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}
