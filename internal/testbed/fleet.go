package testbed

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

const (
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

	// PointToPoint builds client ─ lb0 ─ be0 from two veths, without a
	// switch: the throughput benchmark's gen ─ lb ─ sink. IPv4 only, no
	// routes, no forwarding and no XDP_PASS programs: traffic crosses lb0
	// by the XDP programs its user attaches. LBs and Backends default to 1
	// and can be nothing else; Router must be off.
	PointToPoint bool
}

// Fleet is a built test bed. Close tears it down.
type Fleet struct {
	ID       string // random per run, 6 hex digits
	Prefix   string
	Switch   *Host // NS is the switch namespace, Link the bridge; nil if PointToPoint
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
var ErrNotRoot = errors.New("testbed: needs root (network namespaces, veth, bpffs, XDP); run as root, e.g. with sudo -E go test")

// New builds a fleet. On error it tears down what it made.
func New(opts Options) (_ *Fleet, err error) {
	if opts.LBs == 0 {
		opts.LBs = 1
	}
	if opts.Backends == 0 {
		opts.Backends = 3
		if opts.PointToPoint {
			opts.Backends = 1
		}
	}
	if opts.Prefix == "" {
		opts.Prefix = "lbd"
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	for _, c := range opts.Prefix {
		lower, digit := 'a' <= c && c <= 'z', '0' <= c && c <= '9'
		if !lower && !digit && c != '-' || len(opts.Prefix) > 32 {
			return nil, fmt.Errorf("options: prefix %q: want at most 32 of [a-z0-9-]", opts.Prefix)
		}
	}
	if opts.LBs < 0 || opts.LBs > maxLBs {
		return nil, fmt.Errorf("options: LBs %d out of range 1..%d", opts.LBs, maxLBs)
	}
	if opts.Backends < 0 || opts.Backends > maxBackends {
		return nil, fmt.Errorf("options: Backends %d out of range 1..%d", opts.Backends, maxBackends)
	}
	if opts.PointToPoint && (opts.Router || opts.LBs != 1 || opts.Backends != 1) {
		return nil, fmt.Errorf("options: PointToPoint is one LB and one backend without a router, not Router %v, LBs %d, Backends %d",
			opts.Router, opts.LBs, opts.Backends)
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
	if !opts.PointToPoint {
		if err := f.buildSwitch(); err != nil {
			return nil, err
		}
	}
	for _, h := range f.plan() {
		if err := f.buildHost(h); err != nil {
			return nil, fmt.Errorf("build %s: %w", h.Name, err)
		}
		if testHookHostBuilt != nil {
			if err := testHookHostBuilt(h); err != nil {
				return nil, err
			}
		}
	}
	if opts.PointToPoint {
		// lb0's eth0 came with be0's veth
		if err := f.LBs[0].readLink(); err != nil {
			return nil, err
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
	ports := map[*Host][]string{}
	if f.Switch != nil {
		ports[f.Switch] = []string{f.Switch.Link}
	}
	for _, h := range f.Hosts() {
		if err := h.waitOperUp(upTimeout, h.Link); err != nil {
			return nil, err
		}
		if h.up != nil {
			ports[h.up] = append(ports[h.up], h.Peer)
		}
	}
	for up, names := range ports {
		if err := up.waitOperUp(upTimeout, names...); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// testHookHostBuilt, when set, runs after each host is built; tests use it
// to make New fail halfway.
var testHookHostBuilt func(*Host) error

// nsName is the netns name of a role: <prefix>-<id>-<role>.
func (f *Fleet) nsName(role string) string { return f.Prefix + "-" + f.ID + "-" + role }

// linkName is the switch-side link name of a role: <role>-<id> (at most 15 bytes).
func (f *Fleet) linkName(role string) string { return role + "-" + f.ID }

// plan makes the fleet's hosts, each saying where its veth starts (h.up,
// h.Peer), and returns them in the order to build them: a host's up before
// the host.
func (f *Fleet) plan() []*Host {
	f.Client = f.newHost("client", 1)
	for i := range f.opts.LBs {
		f.LBs = append(f.LBs, f.newHost(fmt.Sprintf("lb%d", i), firstLB+i))
	}
	for i := range f.opts.Backends {
		f.Backends = append(f.Backends, f.newHost(fmt.Sprintf("be%d", i), firstBackend+i))
	}
	switch {
	case f.opts.Router:
		f.Router = f.newHost("router", 1)
		f.Client.Addr = hostAddr(ClientNet4, 2)
		f.Client.Addr6 = hostAddr(ClientNet6, 2)
		f.Client.Peer = clientLegLink
		f.Client.up = f.Router
		// the client's veth starts in the router
		return slices.Concat([]*Host{f.Router, f.Client}, f.LBs, f.Backends)
	case f.opts.PointToPoint:
		lb, be := f.LBs[0], f.Backends[0]
		f.Client.Addr = hostAddr(ClientNet4, 2)
		f.Client.Peer = clientLegLink
		f.Client.up = lb
		lb.Peer, lb.up = "", nil
		be.Peer = lb.Link // be0's veth starts in lb0 as its eth0
		be.up = lb
		for _, h := range f.Hosts() {
			h.Addr6 = netip.Addr{}
		}
		return []*Host{lb, f.Client, be}
	default:
		return slices.Concat([]*Host{f.Client}, f.LBs, f.Backends)
	}
}

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
