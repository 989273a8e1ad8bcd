package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
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
	// ClientMTU is the client's MTU; everything else gets FabricMTU, which
	// leaves room for the outer header the LB pushes.
	ClientMTU = 1500
	FabricMTU = 1600

	maxLBs      = 8   // .2 … .9
	maxBackends = 200 // .11 … .210

	firstLB      = 2
	firstBackend = 11

	// routerClientLink is the router's leg on the client's segment (its
	// leg on the bridge is eth0, like every other host's Link).
	routerClientLink = "eth1"

	upTimeout    = 5 * time.Second
	stopTimeout  = 5 * time.Second
	pollInterval = 10 * time.Millisecond
)

// Options says what to build. Zero values pick the defaults.
type Options struct {
	LBs      int    // LB nodes; default 1
	Backends int    // backends; default 3
	Prefix   string // first part of every namespace name; default "lbd"
	LogDir   string // if set, Start also writes each process's output to a file here

	// Router puts the client behind a router namespace that spreads flows
	// to a VIP over the LB nodes by ECMP (see RouteVIP) instead of on the
	// bridge. Off, the topology is the single segment of old.
	Router bool
}

// Fleet is a built test bed. Close tears it down.
type Fleet struct {
	ID       string // random per run, 6 hex digits
	Prefix   string
	Switch   *Host // NS is the switch namespace, Link the bridge
	Client   *Host
	Router   *Host // nil unless Options.Router; Link is its leg on the bridge
	LBs      []*Host
	Backends []*Host
	Dir      string // temporary directory owned by the fleet
	PinDir   string // a bpffs mounted under Dir in the host mount namespace

	opts     Options
	lock     *os.File // flock held for the fleet's lifetime: "this run is alive"
	xdp      *ebpf.Program
	xdpLinks []link.Link

	mu     sync.Mutex
	procs  []*Process
	closed bool
	err    error
	nprocs int
}

// Hosts returns every host but the switch: client, router (if any), LBs,
// backends.
func (f *Fleet) Hosts() []*Host {
	hs := []*Host{f.Client}
	if f.Router != nil {
		hs = append(hs, f.Router)
	}
	hs = append(hs, f.LBs...)
	return append(hs, f.Backends...)
}

// ErrNotRoot is returned by New when the program does not run as root.
var ErrNotRoot = errors.New("testbed: needs root (network namespaces, veth, bpffs, XDP); run as root, e.g. sudo -E go test ./...")

// New builds a fleet. On error it tears down what it made.
func New(opts Options) (_ *Fleet, err error) {
	if opts.LBs == 0 {
		opts.LBs = 1
	}
	if opts.Backends == 0 {
		opts.Backends = 3
	}
	if opts.Prefix == "" {
		opts.Prefix = "lbd"
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	for _, c := range opts.Prefix {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') || len(opts.Prefix) > 32 {
			return nil, fmt.Errorf("options: prefix %q: want at most 32 of [a-z0-9-]", opts.Prefix)
		}
	}
	if opts.LBs < 0 || opts.LBs > maxLBs {
		return nil, fmt.Errorf("options: LBs %d out of range 1..%d", opts.LBs, maxLBs)
	}
	if opts.Backends < 0 || opts.Backends > maxBackends {
		return nil, fmt.Errorf("options: Backends %d out of range 1..%d", opts.Backends, maxBackends)
	}

	f := &Fleet{Prefix: opts.Prefix, opts: opts}
	defer func() {
		if err != nil {
			err = errors.Join(err, f.Close())
		}
	}()

	if err := f.reserveID(); err != nil {
		return nil, err
	}
	if err := f.mountPinDir(); err != nil {
		return nil, err
	}
	if err := f.buildSwitch(); err != nil {
		return nil, err
	}

	f.Client = f.newHost("client", 1)
	build := []*Host{f.Client}
	if opts.Router {
		f.Router = f.newHost("router", 1)
		f.Client.Addr = hostAddr(ClientNet4, 2)
		f.Client.Addr6 = hostAddr(ClientNet6, 2)
		f.Client.Peer = routerClientLink
		f.Client.up = f.Router
		build = []*Host{f.Router, f.Client} // the client's veth starts in the router
	}
	for i := range opts.LBs {
		f.LBs = append(f.LBs, f.newHost(fmt.Sprintf("lb%d", i), firstLB+i))
	}
	for i := range opts.Backends {
		f.Backends = append(f.Backends, f.newHost(fmt.Sprintf("be%d", i), firstBackend+i))
	}
	build = append(build, f.LBs...)
	build = append(build, f.Backends...)
	for _, h := range build {
		if err := f.buildHost(h); err != nil {
			return nil, fmt.Errorf("build %s: %w", h.Name, err)
		}
		if testHookHostBuilt != nil {
			if err := testHookHostBuilt(h); err != nil {
				return nil, err
			}
		}
	}
	if err := f.Client.setTxOffloads(false); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if err := f.routeThroughRouter(); err != nil {
		return nil, err
	}
	if err := f.attachPeerXDP(); err != nil {
		return nil, err
	}
	ports := map[*Host][]string{f.Switch: {f.Switch.Link}}
	for _, h := range f.Hosts() {
		if err := h.waitOperUp(upTimeout, h.Link); err != nil {
			return nil, err
		}
		ports[h.up] = append(ports[h.up], h.Peer)
	}
	for up, names := range ports {
		if err := up.waitOperUp(upTimeout, names...); err != nil {
			return nil, err
		}
	}
	return f, nil
}

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

// nsName is the netns name of a role: <prefix>-<id>-<role>.
func (f *Fleet) nsName(role string) string { return f.Prefix + "-" + f.ID + "-" + role }

// linkName is the switch-side link name of a role: <role>-<id> (at most 15 bytes).
func (f *Fleet) linkName(role string) string { return role + "-" + f.ID }

func (f *Fleet) newHost(role string, n int) *Host {
	return &Host{
		Name:  role,
		NS:    f.nsName(role),
		Link:  "eth0",
		Peer:  f.linkName(role),
		Addr:  netip.AddrFrom4([4]byte{198, 18, 0, byte(n)}),
		Addr6: netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", n)),
		fleet: f,
		up:    f.Switch,
		ns:    -1,
	}
}

// reserveID picks a random ID and takes the run's lock file, so that Cleanup
// in another process leaves this run alone while it lives.
func (f *Fleet) reserveID() error {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return fmt.Errorf("lock dir: %w", err)
	}
	for range 100 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		id := hex.EncodeToString(b[:])
		if len(namespacesOf(f.Prefix, id)) > 0 {
			continue
		}
		fd, err := os.OpenFile(lockPath(f.Prefix, id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("lock file: %w", err)
		}
		if err := unix.Flock(int(fd.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			fd.Close()
			os.Remove(fd.Name())
			return fmt.Errorf("lock %s: %w", fd.Name(), err)
		}
		fmt.Fprintf(fd, "%d\n", os.Getpid())
		f.ID, f.lock = id, fd
		registerLive(f.Prefix, id)
		return nil
	}
	return errors.New("no free fleet ID after 100 tries")
}

func (f *Fleet) mountPinDir() error {
	dir, err := os.MkdirTemp("", f.Prefix+"-"+f.ID+"-")
	if err != nil {
		return err
	}
	f.Dir = dir
	pin := filepath.Join(dir, "bpf")
	if err := os.Mkdir(pin, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("bpffs", pin, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs on %s: %w", pin, err)
	}
	f.PinDir = pin
	return nil
}

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
// the client of a fleet with a router, the router's client leg.
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
		// The router's client leg: .1 on the client's segment.
		for _, a := range []netip.Addr{gateway(h.Addr), gateway(h.Addr6)} {
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

// addAddr adds a to l with its segment's prefix length, without DAD.
func addAddr(nh *netlink.Handle, l netlink.Link, a netip.Addr) error {
	addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, segmentOf(a).Bits())), Flags: unix.IFA_F_NODAD}
	if err := nh.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("add %s to %s: %w", a, l.Attrs().Name, err)
	}
	return nil
}

// gateway returns the router's address on the segment of a (.1 / ::1).
func gateway(a netip.Addr) netip.Addr { return hostAddr(segmentOf(a), 1) }

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

// attachPeerXDP attaches XDP_PASS to the switch-side peer of every LB veth:
// XDP_TX on a veth reaches the peer only if the peer has an XDP program
// (or GRO) — without it the LB's replies are dropped (Linux 6.18).
func (f *Fleet) attachPeerXDP() error {
	if len(f.LBs) == 0 {
		return nil
	}
	prog, err := newPassProgram()
	if err != nil {
		return err
	}
	f.xdp = prog
	return f.Switch.Do(func() error {
		for _, lb := range f.LBs {
			ifc, err := net.InterfaceByName(lb.Peer)
			if err != nil {
				return err
			}
			l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
			if err != nil {
				return fmt.Errorf("attach xdp_pass to %s: %w", lb.Peer, err)
			}
			f.xdpLinks = append(f.xdpLinks, l)
		}
		return nil
	})
}

// PassProgramID is the ID of the XDP_PASS program attached to the LB peers
// (0 when there are none).
func (f *Fleet) PassProgramID() (ebpf.ProgramID, error) {
	if f.xdp == nil {
		return 0, nil
	}
	info, err := f.xdp.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return id, nil
}

// Close tears the fleet down: stops the processes it started, kills anything
// else left in its namespaces, removes links and namespaces, unmounts PinDir
// and removes Dir. It works after a partial New, is safe to call twice and
// returns every error it met.
func (f *Fleet) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return f.err
	}
	f.closed = true
	procs := f.procs
	f.mu.Unlock()

	var errs []error
	var wg sync.WaitGroup
	perr := make([]error, len(procs))
	for i, p := range procs {
		wg.Go(func() {
			if err := p.Stop(); err != nil && !isExitError(err) {
				perr[i] = fmt.Errorf("stop %s on %s: %w", p.Name, p.Host.Name, err)
			}
		})
	}
	wg.Wait()
	errs = append(errs, perr...)

	hosts := []*Host{f.Switch, f.Client, f.Router}
	hosts = append(hosts, f.LBs...)
	hosts = append(hosts, f.Backends...)
	for _, h := range hosts {
		if h != nil {
			errs = append(errs, killNetnsPids(h.NS))
		}
	}

	for _, l := range f.xdpLinks {
		errs = append(errs, l.Close())
	}
	f.xdpLinks = nil
	if f.xdp != nil {
		errs = append(errs, f.xdp.Close())
		f.xdp = nil
	}

	// Delete the veths explicitly: namespace teardown frees them
	// asynchronously, deleting them here makes Close synchronous.
	for _, up := range []*Host{f.Router, f.Switch} {
		if up != nil && up.ns >= 0 {
			errs = append(errs, up.deleteLinks(hosts[1:]))
		}
	}
	for _, h := range hosts {
		if h == nil {
			continue
		}
		if h.ns >= 0 {
			h.ns.Close()
			h.ns = -1
		}
		errs = append(errs, deleteNamedNS(h.NS))
	}

	if f.PinDir != "" {
		if err := unmount(f.PinDir); err != nil {
			errs = append(errs, err)
		} else {
			f.PinDir = ""
		}
	}
	if f.Dir != "" && f.PinDir == "" {
		errs = append(errs, os.RemoveAll(f.Dir))
	}

	if f.lock != nil {
		errs = append(errs, os.Remove(f.lock.Name()))
		errs = append(errs, f.lock.Close())
		unregisterLive(f.Prefix, f.ID)
	}

	err := errors.Join(errs...)
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
	return err
}

// deleteLinks deletes the peers of hosts that are in up's namespace, and
// the bridge if up is the switch.
func (up *Host) deleteLinks(hosts []*Host) error {
	nh, err := up.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	var errs []error
	for _, h := range hosts {
		if h == nil || h.up != up || h.Peer == "" {
			continue
		}
		l, err := nh.LinkByName(h.Peer)
		if err != nil {
			continue // never made, or already gone
		}
		if err := nh.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", h.Peer, err))
		}
	}
	if up == up.fleet.Switch {
		if l, err := nh.LinkByName(up.Link); err == nil {
			if err := nh.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("delete %s: %w", up.Link, err))
			}
		}
	}
	return errors.Join(errs...)
}

// testHookHostBuilt, when set, runs after each host is built; tests use it
// to make New fail halfway.
var testHookHostBuilt func(*Host) error

// deleteNamedNS removes a named netns (`ip netns del`); a name that is not
// there is not an error.
func deleteNamedNS(name string) error {
	path := filepath.Join(netnsDir, name)
	err := unix.Unmount(path, unix.MNT_DETACH)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil && !errors.Is(err, unix.EINVAL) { // EINVAL: a file, not mounted
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

func unmount(dir string) error {
	err := unix.Unmount(dir, 0)
	if err == nil || errors.Is(err, unix.EINVAL) { // EINVAL: not mounted
		return nil
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
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

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
