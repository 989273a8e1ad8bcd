package testbed

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

// routeThroughRouter, in a fleet with a router, gives the client default
// routes via the router and every host on the bridge routes to the
// client's segment via the router: replies go straight back through it,
// never through an LB.
func (f *Fleet) routeThroughRouter() error {
	if f.Router == nil {
		return nil
	}
	type route struct {
		dst netip.Prefix
		via netip.Addr
	}
	routes := map[*Host][]route{
		f.Client: {
			{netip.PrefixFrom(netip.IPv4Unspecified(), 0), gateway(f.Client.Addr)},
			{netip.PrefixFrom(netip.IPv6Unspecified(), 0), gateway(f.Client.Addr6)},
		},
	}
	for _, h := range append(append([]*Host{}, f.LBs...), f.Backends...) {
		routes[h] = []route{{ClientNet4, f.Router.Addr}, {ClientNet6, f.Router.Addr6}}
	}
	for h, rs := range routes {
		for _, r := range rs {
			if err := h.RouteVia(r.dst, r.via); err != nil {
				return err
			}
		}
	}
	return nil
}

// RouteVIP routes a VIP prefix to the LB nodes via (default: all of them),
// replacing any route to it; call it again to change the set, e.g. to drop
// a node that left.
//
// With a router, the route is on the router: one with a nexthop per node,
// over which the kernel spreads flows by 5-tuple, so each flow sticks to
// one node. Without one, the route is on the client, via the first node
// only (the single-segment test bed has no ECMP).
func (f *Fleet) RouteVIP(prefix netip.Prefix, via ...*Host) error {
	if !prefix.IsValid() {
		return errors.New("route VIP: invalid prefix")
	}
	prefix = prefix.Masked()
	if f.opts.PointToPoint {
		return fmt.Errorf("route %s: a point-to-point fleet has no routes", prefix)
	}
	if len(via) == 0 {
		via = f.LBs
	}
	if len(via) == 0 {
		return fmt.Errorf("route %s: no LB nodes", prefix)
	}
	var gws []netip.Addr
	for _, h := range via {
		if h == nil || h.fleet != f || h.up != f.Switch || h == f.Router || h.Peer == "" {
			return fmt.Errorf("route %s via %v: not a host on this fleet's bridge", prefix, h)
		}
		gw := h.Addr
		if prefix.Addr().Is6() {
			gw = h.Addr6
		}
		if slices.Contains(gws, gw) {
			return fmt.Errorf("route %s: %s given twice", prefix, h.Name)
		}
		gws = append(gws, gw)
	}
	if f.Router == nil {
		return f.Client.RouteVia(prefix, gws[0])
	}
	r := &netlink.Route{Dst: ipNet(prefix)}
	if len(gws) == 1 {
		r.LinkIndex, r.Gw = f.Router.Ifindex, gws[0].AsSlice()
	}
	if len(gws) > 1 {
		for _, gw := range gws {
			r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{LinkIndex: f.Router.Ifindex, Gw: gw.AsSlice()})
		}
	}
	nh, err := f.Router.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	if err := nh.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s via %v in %s: %w", prefix, gws, f.Router.NS, err)
	}
	return nil
}

// RouteVia routes prefix (a VIP range) via the address via on h's Link,
// e.g. f.Client.RouteVia(netip.MustParsePrefix("198.19.0.0/24"), f.LBs[0].Addr).
// It replaces an existing route to prefix.
func (h *Host) RouteVia(prefix netip.Prefix, via netip.Addr) error {
	if prefix.Addr().Is4() != via.Is4() {
		return fmt.Errorf("route %s via %s: address families differ", prefix, via)
	}
	nh, err := h.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	r := &netlink.Route{LinkIndex: h.Ifindex, Dst: ipNet(prefix.Masked()), Gw: via.AsSlice()}
	if err := nh.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s via %s in %s: %w", prefix, via, h.NS, err)
	}
	return nil
}
