package backends

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NextHop is where the data path sends a backend's packets.
type NextHop struct {
	Ifindex int              // interface the route to the backend leaves by
	Via     netip.Addr       // the backend itself, or the route's gateway
	SrcMAC  net.HardwareAddr // that interface's address
	DstMAC  net.HardwareAddr // the neighbour's address
}

// ErrUnresolved is returned when the neighbour's address did not resolve in time.
var ErrUnresolved = errors.New("neighbour did not resolve")

// Resolver finds next hops through netlink: a route lookup, then the neighbour entry,
// asking the kernel to resolve it when it is missing.
type Resolver struct {
	Handle  *netlink.Handle // nil: the calling thread's network namespace
	Timeout time.Duration   // for one resolution; default 3s
	Poll    time.Duration   // neighbour table poll interval; default 20ms
}

func (r *Resolver) handle() *netlink.Handle {
	if r.Handle != nil {
		return r.Handle
	}
	h, _ := netlink.NewHandle()
	return h
}

// Resolve returns the next hop toward addr.
func (r *Resolver) Resolve(ctx context.Context, addr netip.Addr) (NextHop, error) {
	h := r.handle()
	if r.Handle == nil && h != nil {
		defer h.Close()
	}
	if h == nil {
		return NextHop{}, errors.New("netlink handle")
	}
	routes, err := h.RouteGet(addr.AsSlice())
	if err != nil || len(routes) == 0 {
		return NextHop{}, fmt.Errorf("route to %s: %w", addr, err)
	}
	rt := routes[0]
	nh := NextHop{Ifindex: rt.LinkIndex, Via: addr}
	if gw, ok := netip.AddrFromSlice(rt.Gw); ok && rt.Gw != nil && !gw.IsUnspecified() {
		nh.Via = gw.Unmap()
	}
	link, err := h.LinkByIndex(rt.LinkIndex)
	if err != nil {
		return NextHop{}, fmt.Errorf("route to %s: interface %d: %w", addr, rt.LinkIndex, err)
	}
	nh.SrcMAC = link.Attrs().HardwareAddr
	if link.Attrs().Flags&net.FlagLoopback != 0 {
		return NextHop{}, fmt.Errorf("route to %s: it is a local address", addr)
	}

	timeout := r.Timeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	poll := r.Poll
	if poll == 0 {
		poll = 20 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	asked := false
	for {
		if mac := lookupNeigh(h, nh.Ifindex, nh.Via); mac != nil {
			nh.DstMAC = mac
			return nh, nil
		}
		if !asked {
			askKernel(h, nh.Ifindex, nh.Via)
			asked = true
		}
		select {
		case <-ctx.Done():
			return nh, fmt.Errorf("next hop %s of %s: %w", nh.Via, addr, ErrUnresolved)
		case <-time.After(poll):
		}
	}
}

const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

func lookupNeigh(h *netlink.Handle, ifindex int, via netip.Addr) net.HardwareAddr {
	family := netlink.FAMILY_V4
	if via.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := h.NeighList(ifindex, family)
	if err != nil {
		return nil
	}
	for _, n := range neighs {
		ip, ok := netip.AddrFromSlice(n.IP)
		if ok && ip.Unmap() == via && n.State&usable != 0 && len(n.HardwareAddr) == 6 {
			return n.HardwareAddr
		}
	}
	return nil
}

// askKernel starts neighbour resolution: NTF_USE makes the kernel treat the entry as used,
// which sends a solicitation for an unresolved one (the same as a packet would).
func askKernel(h *netlink.Handle, ifindex int, via netip.Addr) {
	family := unix.AF_INET
	if via.Is6() {
		family = unix.AF_INET6
	}
	_ = h.NeighSet(&netlink.Neigh{LinkIndex: ifindex, Family: family, IP: via.AsSlice(),
		State: netlink.NUD_NONE, Flags: netlink.NTF_USE})
}
