package testbed

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Addressing (see the package doc): the bridge's segment is Net4 and Net6.
// Hosts get the same last number in both families: client (or router) .1 /
// ::1, LBs .2… / ::2…, backends .11… / ::11…. With a router, the client
// has a segment of its own, ClientNet4 and ClientNet6: router .1 / ::1,
// client .2 / ::2.
var (
	Net4       = netip.MustParsePrefix("198.18.0.0/24")
	Net6       = netip.MustParsePrefix("2001:db8::/64")
	ClientNet4 = netip.MustParsePrefix("198.18.1.0/24")
	ClientNet6 = netip.MustParsePrefix("2001:db8:0:1::/64")
)

const (
	maxLBs      = 8   // .2 … .9
	maxBackends = 200 // .11 … .210

	firstLB      = 2
	firstBackend = 11
)

// hostAddr returns the address numbered n in the segment p.
func hostAddr(p netip.Prefix, n int) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	b[len(b)-1] = byte(n)
	a, _ := netip.AddrFromSlice(b)
	return a
}

// segmentOf returns the segment (Net4, Net6, ClientNet4, ClientNet6) a host
// address is on.
func segmentOf(a netip.Addr) netip.Prefix {
	for _, p := range []netip.Prefix{ClientNet4, ClientNet6, Net6} {
		if p.Contains(a) {
			return p
		}
	}
	return Net4
}

// addrOn returns h's address on the segment of a: h.Addr or h.Addr6 when it
// is there, else .1 / ::1 (a router's leg on the client's segment). Invalid
// if a is.
func (h *Host) addrOn(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return a
	}
	for _, own := range []netip.Addr{h.Addr, h.Addr6} {
		if own.IsValid() && segmentOf(own) == segmentOf(a) {
			return own
		}
	}
	return gateway(a)
}

// gateway returns the router's address on the segment of a (.1 / ::1).
func gateway(a netip.Addr) netip.Addr { return hostAddr(segmentOf(a), 1) }

// addAddr adds a to l with its segment's prefix length, without DAD; an
// invalid a (no IPv6 in a point-to-point fleet) adds nothing.
func addAddr(nh *netlink.Handle, l netlink.Link, a netip.Addr) error {
	if !a.IsValid() {
		return nil
	}
	addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, segmentOf(a).Bits())), Flags: unix.IFA_F_NODAD}
	if err := nh.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("add %s to %s: %w", a, l.Attrs().Name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
