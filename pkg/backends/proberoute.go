package backends

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ProbeRoutes keeps the policy routing that health probes "through the tunnel" need: a
// probe socket marked Mark/Mask connects to a VIP, which this host does not own, so a rule
// sends marked packets to Table, where each VIP has a route out of the LB interface via a
// backend's next hop. That gets the packet a resolved neighbour and to the interface's
// egress, where tc_probe encapsulates it toward the backend named by the mark. Unmarked
// traffic never sees the table.
type ProbeRoutes struct {
	Handle   *netlink.Handle // nil: the calling thread's namespace
	Table    int             // default 0x4c42
	Priority int             // of the rule; default 0x4c42
	Mark     uint32
	Mask     uint32
	Ifindex  int // the LB interface

	routes map[netip.Addr]netip.Addr // vip → via, as installed
	rule   bool
}

func (p *ProbeRoutes) h() (*netlink.Handle, error) {
	if p.Handle != nil {
		return p.Handle, nil
	}
	h, err := netlink.NewHandle()
	if err == nil {
		p.Handle = h
	}
	return h, err
}

func (p *ProbeRoutes) table() int {
	if p.Table == 0 {
		return 0x4c42
	}
	return p.Table
}

func (p *ProbeRoutes) rules() []*netlink.Rule {
	var out []*netlink.Rule
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		r := netlink.NewRule()
		r.Family = fam
		r.Mark = p.Mark
		mask := p.Mask
		r.Mask = &mask
		r.Table = p.table()
		r.Priority = p.Priority
		if r.Priority == 0 {
			r.Priority = 0x4c42
		}
		out = append(out, r)
	}
	return out
}

// Sync makes the table hold exactly one route per VIP in vias (VIP → the next hop to
// route it by); an empty map removes the rule too.
func (p *ProbeRoutes) Sync(vias map[netip.Addr]netip.Addr) error {
	h, err := p.h()
	if err != nil {
		return err
	}
	if p.routes == nil {
		p.routes = map[netip.Addr]netip.Addr{}
	}
	var errs []error
	for vip, via := range vias {
		if old, ok := p.routes[vip]; ok && old == via {
			continue
		}
		rt := &netlink.Route{LinkIndex: p.Ifindex, Dst: hostPrefix(vip), Gw: via.AsSlice(), Table: p.table(),
			Flags: int(netlink.FLAG_ONLINK)}
		if err := h.RouteReplace(rt); err != nil {
			errs = append(errs, fmt.Errorf("probe route %s via %s: %w", vip, via, err))
			continue
		}
		p.routes[vip] = via
	}
	for vip := range p.routes {
		if _, ok := vias[vip]; !ok {
			if err := h.RouteDel(&netlink.Route{LinkIndex: p.Ifindex, Dst: hostPrefix(vip), Table: p.table()}); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("remove probe route %s: %w", vip, err))
			}
			delete(p.routes, vip)
		}
	}
	switch {
	case len(p.routes) > 0 && !p.rule:
		for _, r := range p.rules() {
			if err := h.RuleAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
				errs = append(errs, fmt.Errorf("probe rule: %w", err))
			}
		}
		p.rule = true
	case len(p.routes) == 0 && p.rule:
		p.delRules(h)
	}
	return errors.Join(errs...)
}

func (p *ProbeRoutes) delRules(h *netlink.Handle) {
	for _, r := range p.rules() {
		_ = h.RuleDel(r)
	}
	p.rule = false
}

// Close removes the routes and the rule.
func (p *ProbeRoutes) Close() error {
	err := p.Sync(nil)
	if h, herr := p.h(); herr == nil {
		p.delRules(h)
	}
	return err
}

func hostPrefix(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}
