package testbed

// BIRD on the router: the LB nodes announce the VIPs to it over BGP, and it installs them
// into the router's kernel as multipath routes (instead of RouteVIP's static ones).

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// BGP's AS numbers in the test bed, as in configs/bird.conf.
const (
	RouterASN = 65000
	NodeASN   = 65001
)

// BIRDOptions say how the router peers with the LB nodes.
type BIRDOptions struct {
	// BFD lists the LB nodes whose sessions run BFD; the others' do not.
	BFD []*Host
	// HoldTime is the hold time BIRD proposes, whole seconds; 0 keeps bird.conf's (9 s).
	HoldTime time.Duration
}

// birdNodesMarker starts the part of configs/bird.conf that lists the LB nodes.
const birdNodesMarker = "# LB nodes:"

// birdConfig is configs/bird.conf with the LB node sessions replaced by one passive session
// per node of f and family (IPv4, IPv6), with BFD for the nodes in o.BFD.
func (f *Fleet) birdConfig(o BIRDOptions) ([]byte, error) {
	i := bytes.Index(configs.BIRD, []byte(birdNodesMarker))
	if i < 0 {
		return nil, fmt.Errorf("configs/bird.conf has no %q line", birdNodesMarker)
	}
	conf := string(configs.BIRD[:i])
	if o.HoldTime != 0 {
		if o.HoldTime%time.Second != 0 || o.HoldTime < 3*time.Second {
			return nil, fmt.Errorf("bird: hold time %v: want whole seconds, at least 3", o.HoldTime)
		}
		if !strings.Contains(conf, "\thold time 9;\n") {
			return nil, errors.New(`configs/bird.conf has no "hold time 9;" to change`)
		}
		conf = strings.ReplaceAll(conf, "\thold time 9;\n", fmt.Sprintf("\thold time %d;\n", o.HoldTime/time.Second))
	}
	var b strings.Builder
	// first, so that every protocol and template has it: BIRD's log says why each session
	// went down (BFD, the hold timer, a closed connection)
	b.WriteString("# written by the test bed: log protocol state changes and their causes\ndebug protocols { states, events };\n\n")
	b.WriteString(conf)
	b.WriteString(birdNodesMarker + " written by the test bed for fleet " + f.ID + "\n")
	for _, h := range f.LBs {
		bfd := ""
		if slices.Contains(o.BFD, h) {
			bfd = "\tbfd on;\n"
		}
		fmt.Fprintf(&b, "protocol bgp %s from lbd_node {\n\tneighbor %s as %d;\n%s}\n", h.Name, h.Addr, NodeASN, bfd)
		fmt.Fprintf(&b, "protocol bgp %s_v6 from lbd_node6 {\n\tneighbor %s as %d;\n%s}\n", h.Name, h.Addr6, NodeASN, bfd)
	}
	return []byte(b.String()), nil
}

// StartBIRD runs BIRD 2 on the router, in the foreground, with configs/bird.conf rewritten
// for this fleet (see birdConfig); it waits until BIRD has started. Fleet.Close stops it, and
// BIRD removes its routes as it exits. It needs a fleet with a router, and bird (Debian's
// bird2, which scripts/deps.sh installs).
func (f *Fleet) StartBIRD(o BIRDOptions) (*Process, error) {
	if f.Router == nil {
		return nil, errors.New("bird: the fleet has no router (Options.Router)")
	}
	bin, err := exec.LookPath("bird")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/bird"); serr != nil {
			return nil, fmt.Errorf("bird: not found (Debian package bird2; scripts/deps.sh installs it): %w", err)
		}
		bin = "/usr/sbin/bird"
	}
	conf, err := f.birdConfig(o)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(f.Dir, "bird")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		return nil, err
	}
	p, err := f.Start(f.Router, bin, "-f", "-c", path, "-s", filepath.Join(dir, "bird.ctl"), "-P", filepath.Join(dir, "bird.pid"))
	if err != nil {
		return nil, err
	}
	// The router's control plane gets the CPU first, as on a real router: on a busy test
	// machine, BIRD left off the CPU for the BFD detection time (0.8 s) would take every
	// node's routes away at once. Best effort: without CAP_SYS_NICE it runs as it is.
	_ = unix.SchedSetAttr(p.Pid(), &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 10}, 0)
	if err := p.WaitForLog("Started", 10*time.Second); err != nil {
		return nil, fmt.Errorf("bird: %w", err)
	}
	return p, nil
}

// NextHops returns the router's next hops for the host route to addr that BIRD installed
// (protocol bird), sorted: one per LB node that announces it. None when there is no such
// route.
func (f *Fleet) NextHops(addr netip.Addr) ([]netip.Addr, error) {
	if f.Router == nil {
		return nil, errors.New("next hops: the fleet has no router")
	}
	nh, err := f.Router.Netlink()
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	prefix := netip.PrefixFrom(addr, addr.BitLen())
	routes, err := nh.RouteListFiltered(family, &netlink.Route{Dst: ipNet(prefix), Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("routes to %s in %s: %w", prefix, f.Router.NS, err)
	}
	var out []netip.Addr
	for _, r := range routes {
		if r.Protocol != unix.RTPROT_BIRD {
			continue
		}
		gws := []netip.Addr{}
		if a, ok := netip.AddrFromSlice(r.Gw); ok {
			gws = append(gws, a.Unmap())
		}
		for _, p := range r.MultiPath {
			if a, ok := netip.AddrFromSlice(p.Gw); ok {
				gws = append(gws, a.Unmap())
			}
		}
		out = append(out, gws...)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

// FlowNextHop returns the next hop the router picks for a flow from the client: its route to
// dst, asked with the flow's addresses, protocol and ports as if the packet came in on the
// client's leg, so the kernel hashes it over a multipath route as it does the real packets
// (RTM_GETROUTE with RTA_IIF, RTA_IP_PROTO, RTA_SPORT and RTA_DPORT; Linux 4.17 and later).
func (f *Fleet) FlowNextHop(src, dst netip.AddrPort, proto uint8) (netip.Addr, error) {
	if f.Router == nil {
		return netip.Addr{}, errors.New("flow next hop: the fleet has no router")
	}
	leg, err := f.Router.Interface(f.Client.Peer)
	if err != nil {
		return netip.Addr{}, err
	}
	var gw netip.Addr
	err = f.Router.Do(func() error {
		family := unix.AF_INET
		if dst.Addr().Is6() {
			family = unix.AF_INET6
		}
		req := nl.NewNetlinkRequest(unix.RTM_GETROUTE, unix.NLM_F_REQUEST)
		msg := nl.NewRtMsg()
		msg.Family = uint8(family)
		msg.Dst_len, msg.Src_len = uint8(dst.Addr().BitLen()), uint8(src.Addr().BitLen())
		req.AddData(msg)
		req.AddData(nl.NewRtAttr(unix.RTA_DST, dst.Addr().AsSlice()))
		req.AddData(nl.NewRtAttr(unix.RTA_SRC, src.Addr().AsSlice()))
		req.AddData(nl.NewRtAttr(unix.RTA_IIF, nl.Uint32Attr(uint32(leg.Index))))
		req.AddData(nl.NewRtAttr(unix.RTA_IP_PROTO, nl.Uint8Attr(proto)))
		req.AddData(nl.NewRtAttr(unix.RTA_SPORT, nl.BEUint16Attr(src.Port())))
		req.AddData(nl.NewRtAttr(unix.RTA_DPORT, nl.BEUint16Attr(dst.Port())))
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWROUTE)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			rt := nl.DeserializeRtMsg(m)
			attrs, err := nl.ParseRouteAttr(m[rt.Len():])
			if err != nil {
				return err
			}
			for _, a := range attrs {
				if a.Attr.Type == unix.RTA_GATEWAY {
					if ip, ok := netip.AddrFromSlice(a.Value); ok {
						gw = ip.Unmap()
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("route of %s → %s in %s: %w", src, dst, f.Router.NS, err)
	}
	if !gw.IsValid() {
		return netip.Addr{}, fmt.Errorf("route of %s → %s in %s: no gateway", src, dst, f.Router.NS)
	}
	return gw, nil
}
