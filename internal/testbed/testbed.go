// Package testbed builds a fleet of hosts in network namespaces on one
// machine and tears it down: a switch namespace with a Linux bridge, and a
// client, LB nodes and backends each joined to the bridge by a veth pair.
//
// Tests, `lbd demo` and the benchmarks share it. Every namespace, link and
// temporary directory carries a random per-run ID, so a leftover of a killed
// run never collides with the next one; Cleanup removes such leftovers.
//
//	f := testbed.NewT(t, testbed.Options{LBs: 2, Backends: 3})
//	f.Client.RouteVia(netip.MustParsePrefix("198.19.0.0/24"), f.LBs[0].Addr)
//	lb, _ := f.Start(f.LBs[0], lbdBinary, "run", "--config", cfg, "--pin-dir", f.PinDir)
//	lb.WaitForLog("ready", 10*time.Second)
//	resp, err := f.Client.HTTPClient(2*time.Second).Get("http://198.19.0.1/")
//
// Addresses: 198.18.0.0/24 and 2001:db8::/64 on the links (Net4, Net6); take
// VIPs from elsewhere in 198.18.0.0/15 and 2001:db8::/32, e.g. 198.19.0.0/24
// and 2001:db8:1::/64.
//
// Facts of the kernel (Linux 6.18) the fleet is built around:
//   - XDP_TX on a veth reaches the peer only if the peer has an XDP program:
//     the switch-side end of every LB veth gets an XDP_PASS one.
//   - CHECKSUM_PARTIAL does not survive XDP on veth: the client's TX
//     checksum offload (and so TSO/GSO) is off.
//   - `ip netns exec` remounts /sys, so PinDir is a bpffs in a temporary
//     directory of the host mount namespace, not under /sys/fs/bpf.
//   - A veth drops what it sends until the kernel's linkwatch work has run
//     (up to a second after "link up"): New waits for every port to be
//     operationally up, so the first SYN is not lost.
package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Addressing: one L2 segment. Hosts get the same last number in both
// families: client .1 / ::1, LBs .2… / ::2…, backends .11… / ::11….
var (
	Net4 = netip.MustParsePrefix("198.18.0.0/24")
	Net6 = netip.MustParsePrefix("2001:db8::/64")
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

	upTimeout   = 5 * time.Second
	stopTimeout = 5 * time.Second
)

// Options says what to build. Zero values pick the defaults.
type Options struct {
	LBs      int    // LB nodes; default 1
	Backends int    // backends; default 3
	Prefix   string // first part of every namespace name; default "lbd"
	LogDir   string // if set, Start also writes each process's output to a file here
}

// Fleet is a built test bed. Close tears it down.
type Fleet struct {
	ID       string // random per run, 6 hex digits
	Prefix   string
	Switch   *Host // NS is the switch namespace, Link the bridge
	Client   *Host
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

// Hosts returns every host but the switch: client, LBs, backends.
func (f *Fleet) Hosts() []*Host {
	hs := []*Host{f.Client}
	hs = append(hs, f.LBs...)
	return append(hs, f.Backends...)
}

// ErrNotRoot is returned by New when the program does not run as root.
var ErrNotRoot = errors.New("testbed: needs root (network namespaces, veth, bpffs, XDP); run as root, e.g. sudo -E go test ./...")

// SkipIfNotRoot skips the test, saying why, unless it runs as root.
func SkipIfNotRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip(ErrNotRoot)
	}
}

// NewT builds a fleet for a test: it skips the test when not root, fails it
// when the fleet cannot be built, and closes the fleet in tb.Cleanup. When
// the test failed, the output of every process the fleet started is logged.
func NewT(tb testing.TB, opts Options) *Fleet {
	tb.Helper()
	SkipIfNotRoot(tb)
	f, err := New(opts)
	if err != nil {
		tb.Fatalf("testbed: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			f.mu.Lock()
			procs := append([]*Process(nil), f.procs...)
			f.mu.Unlock()
			for _, p := range procs {
				tb.Logf("testbed: output of %s on %s:\n%s", p.Name, p.Host.Name, p.Output())
			}
		}
		if err := f.Close(); err != nil {
			tb.Errorf("testbed: close: %v", err)
		}
	})
	return f
}

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
	for i := range opts.LBs {
		f.LBs = append(f.LBs, f.newHost(fmt.Sprintf("lb%d", i), firstLB+i))
	}
	for i := range opts.Backends {
		f.Backends = append(f.Backends, f.newHost(fmt.Sprintf("be%d", i), firstBackend+i))
	}
	for _, h := range f.Hosts() {
		mtu := FabricMTU
		if h == f.Client {
			mtu = ClientMTU
		}
		if err := f.buildHost(h, mtu); err != nil {
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
	if err := f.attachPeerXDP(); err != nil {
		return nil, err
	}
	ports := []string{f.Switch.Link}
	for _, h := range f.Hosts() {
		if err := h.waitOperUp(upTimeout, h.Link); err != nil {
			return nil, err
		}
		ports = append(ports, h.Peer)
	}
	if err := f.Switch.waitOperUp(upTimeout, ports...); err != nil {
		return nil, err
	}
	return f, nil
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

// buildHost makes h's namespace and joins it to the bridge.
func (f *Fleet) buildHost(h *Host, mtu int) error {
	ns, err := newNamedNS(h.NS)
	if err != nil {
		return fmt.Errorf("netns %s: %w", h.NS, err)
	}
	h.ns = ns
	// Set before eth0 exists so that it inherits the defaults.
	if err := h.setSysctls(map[string]string{
		"net/ipv4/conf/all/rp_filter":                "2",
		"net/ipv4/conf/default/rp_filter":            "2",
		"net/ipv6/conf/all/accept_dad":               "0",
		"net/ipv6/conf/default/accept_dad":           "0",
		"net/ipv6/conf/default/accept_ra":            "0",
		"net/ipv6/conf/default/router_solicitations": "0",
	}); err != nil {
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

	sh, err := f.Switch.Netlink()
	if err != nil {
		return err
	}
	defer sh.Close()
	queues := runtime.NumCPU() // XDP on veth wants as many queues as CPUs
	la := netlink.NewLinkAttrs()
	la.Name = h.Peer
	la.MTU = FabricMTU
	la.MasterIndex = f.Switch.Ifindex
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
	if err := sh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/%s: %w", h.Peer, h.Link, err)
	}
	peer, err := sh.LinkByName(h.Peer)
	if err != nil {
		return err
	}
	if err := sh.LinkSetUp(peer); err != nil {
		return fmt.Errorf("%s up: %w", h.Peer, err)
	}

	l, err := nh.LinkByName(h.Link)
	if err != nil {
		return err
	}
	for _, a := range []netip.Addr{h.Addr, h.Addr6} {
		p := Net4
		if a.Is6() {
			p = Net6
		}
		addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, p.Bits())), Flags: unix.IFA_F_NODAD}
		if err := nh.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("add %s to %s: %w", a, h.Link, err)
		}
	}
	if err := nh.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s up: %w", h.Link, err)
	}
	h.MAC = l.Attrs().HardwareAddr
	h.Ifindex = l.Attrs().Index
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

	hosts := []*Host{f.Switch, f.Client}
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
	if f.Switch != nil && f.Switch.ns >= 0 {
		errs = append(errs, f.Switch.deleteLinks(hosts[1:]))
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

func (sw *Host) deleteLinks(hosts []*Host) error {
	nh, err := sw.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	var errs []error
	for _, h := range hosts {
		if h == nil {
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
	if l, err := nh.LinkByName(sw.Link); err == nil {
		if err := nh.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", sw.Link, err))
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
