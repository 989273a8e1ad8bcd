package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lbdproj/lbd/internal/daemon"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/internal/testbed"
	"github.com/lbdproj/lbd/pkg/config"
)

// sandbox is a fleet in network namespaces running real lbd processes: `lbd run` on the
// LB nodes, `lbd backend` and an HTTP server that names itself on each backend. The demo
// and the end-to-end tests share it.
type sandbox struct {
	fleet    *testbed.Fleet
	cfg      *config.Config
	cfgPath  string
	lbProcs  []*testbed.Process
	lbCfgs   []string // config file of each LB node
	beProcs  []*testbed.Process
	servers  map[string]*backendServer // by backend host name
	exe      string
	vip      netip.Addr
	vipPort  uint16
	startDur time.Duration
	wrap     []string         // sandboxOptions.wrap
	bird     *testbed.Process // BIRD on the router, with sandboxOptions.bgp
}

type backendServer struct {
	host *testbed.Host
	srv  *http.Server
	ln   net.Listener
}

type sandboxOptions struct {
	exe      string // the lbd binary
	config   []byte // the LB nodes' config; node.pin_dir is overridden per node
	lbs      int
	backends int
	prefix   string
	// cluster gives every LB node a cluster section (bind on its address, join the others,
	// a shared gossip key); router puts a router with ECMP over the LB nodes in front
	cluster, router bool
	// lbSources, when set, is what the backends accept tunnelled packets from (lbd backend
	// --lb-sources) instead of the LB nodes' addresses and encap source prefixes
	lbSources []string
	// flowSyncOff sets cluster.flow_sync: false in the cluster sections
	flowSyncOff bool
	// bgp gives every LB node a bgp section and runs BIRD on the router, which learns the VIP
	// routes from the nodes (implies router; no static routes)
	bgp *sandboxBGP
	// startLBs is how many LB nodes raiseSandbox starts (0: all); StartLB starts the others
	startLBs int
	// beforeLB runs after the backends are up and before any lbd run starts
	beforeLB func(*sandbox) error
	// wrap is a command every lbd process is started through, as systemd would set it up:
	// env NOTIFY_SOCKET=…, or setpriv --bounding-set=… (it must exec lbd, keeping its pid)
	wrap []string
}

// sandboxBGP is the LB nodes' bgp section: they peer with the router (IPv4 and IPv6), with
// BFD for the nodes listed in bfd (on both sides).
type sandboxBGP struct {
	holdTime, announceDelay, shutdownDrain time.Duration
	bfd                                    []int
}

func raiseSandbox(o sandboxOptions) (_ *sandbox, err error) {
	start := time.Now()
	fleet, err := testbed.New(testbed.Options{LBs: o.lbs, Backends: o.backends, Prefix: o.prefix, Router: o.router || o.bgp != nil})
	if err != nil {
		return nil, err
	}
	s := &sandbox{fleet: fleet, exe: o.exe, servers: map[string]*backendServer{}, wrap: o.wrap}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.cfgPath = filepath.Join(fleet.Dir, "lbd.yaml")
	if err := os.WriteFile(s.cfgPath, o.config, 0o600); err != nil {
		return nil, err
	}
	cfg, err := config.Load(s.cfgPath)
	if err != nil {
		return nil, fmt.Errorf("sandbox config: %w", err)
	}
	s.cfg = cfg
	if len(cfg.VIPs) == 0 {
		return nil, errors.New("sandbox config has no VIP")
	}
	s.vip, s.vipPort = cfg.VIPs[0].Address, cfg.VIPs[0].Port

	// the backends accept tunnelled packets from the LB nodes' addresses, for the config's VIPs
	var sources, vips []string
	for _, h := range fleet.LBs {
		for _, a := range []netip.Addr{h.Addr, h.Addr6} {
			if a.IsValid() {
				sources = append(sources, a.String())
			}
		}
	}
	for _, p := range []netip.Prefix{cfg.Node.EncapSourcePrefix, cfg.Node.EncapSourcePrefix6} {
		if p.IsValid() { // outer sources picked per flow inside a prefix
			sources = append(sources, p.String())
		}
	}
	if o.lbSources != nil {
		sources = o.lbSources
	}
	for _, v := range cfg.VIPs {
		vips = append(vips, v.Address.String())
	}
	for _, h := range fleet.Backends {
		if err := s.startServer(h); err != nil {
			return nil, err
		}
		p, err := s.startLbd(h, "backend", "--interface", h.Link, "--pin-dir", s.pinDir(h),
			"--lb-sources", strings.Join(sources, ","), "--vips", strings.Join(vips, ","),
			"--api", s.backendAPI(h).String())
		if err != nil {
			return nil, err
		}
		if err := p.WaitForLog("backend ready", 20*time.Second); err != nil {
			return nil, fmt.Errorf("lbd backend on %s: %w\n%s", h.Name, err, p.Output())
		}
		s.beProcs = append(s.beProcs, p)
	}
	for i := range fleet.LBs {
		path := s.cfgPath
		if o.cluster || o.bgp != nil {
			if path, err = s.nodeConfig(o, i); err != nil {
				return nil, err
			}
		}
		s.lbCfgs = append(s.lbCfgs, path)
	}
	if o.bgp != nil {
		bo := testbed.BIRDOptions{HoldTime: o.bgp.holdTime}
		for _, i := range o.bgp.bfd {
			bo.BFD = append(bo.BFD, fleet.LBs[i])
		}
		if s.bird, err = fleet.StartBIRD(bo); err != nil {
			return nil, err
		}
	}
	if o.beforeLB != nil {
		if err := o.beforeLB(s); err != nil {
			return nil, err
		}
	}
	for i := range fleet.LBs[:cmp.Or(o.startLBs, len(fleet.LBs))] {
		if err := s.StartLB(i); err != nil {
			return nil, err
		}
	}
	// the client reaches the VIPs through the router's ECMP over every LB node, or through
	// the first LB node; with BGP, through the routes BIRD learns from the nodes
	for _, v := range cfg.VIPs {
		if o.bgp != nil {
			break
		}
		if err := fleet.RouteVIP(netip.PrefixFrom(v.Address, v.Address.BitLen()), fleet.LBs...); err != nil {
			return nil, err
		}
	}
	s.startDur = time.Since(start)
	return s, nil
}

func (s *sandbox) pinDir(h *testbed.Host) string { return filepath.Join(s.fleet.PinDir, h.Name) }

// backendAPI is where backend h's lbd serves /metrics: its address on the bridge, so that
// a Prometheus on an LB node can scrape it.
func (s *sandbox) backendAPI(h *testbed.Host) netip.AddrPort { return netip.AddrPortFrom(h.Addr, 9178) }

// nodeConfig writes LB node i's config: o.config plus its name, with o.cluster a cluster
// section that binds its own address and joins the other nodes, all sharing one gossip key,
// and with o.bgp a bgp section that peers with the router.
func (s *sandbox) nodeConfig(o sandboxOptions, i int) (string, error) {
	key := filepath.Join(s.fleet.Dir, "gossip.key")
	if _, err := os.Stat(key); o.cluster && err != nil {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return "", err
		}
		if err := os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
			return "", err
		}
	}
	h := s.fleet.LBs[i]
	var b strings.Builder
	b.WriteString(strings.Replace(string(o.config), "node:\n", fmt.Sprintf("node:\n  name: %s\n", h.Name), 1))
	if o.cluster {
		fmt.Fprintf(&b, "\ncluster:\n  bind: %s:7946\n  secret_file: %s\n  quorum: majority\n  flow_sync: %v\n  join:\n",
			h.Addr, key, !o.flowSyncOff)
		for j, other := range s.fleet.LBs {
			if j != i {
				fmt.Fprintf(&b, "    - %s:7946\n", other.Addr)
			}
		}
	}
	if g := o.bgp; g != nil {
		bfd := slices.Contains(g.bfd, i)
		fmt.Fprintf(&b, "\nbgp:\n  asn: %d\n  hold_time: %s\n  announce_delay: %s\n  shutdown_drain: %s\n  communities: [\"%d:100\"]\n  peers:\n",
			testbed.NodeASN, cmp.Or(g.holdTime, config.DefaultBGPHoldTime), g.announceDelay, g.shutdownDrain, testbed.NodeASN)
		for _, a := range []netip.Addr{s.fleet.Router.Addr, s.fleet.Router.Addr6} {
			fmt.Fprintf(&b, "    - address: %s\n      asn: %d\n      bfd: %t\n", a, testbed.RouterASN, bfd)
		}
	}
	path := filepath.Join(s.fleet.Dir, fmt.Sprintf("lbd-%s.yaml", h.Name))
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// StartLB starts `lbd run` on LB node i and waits until it serves.
func (s *sandbox) StartLB(i int) error {
	h := s.fleet.LBs[i]
	p, err := s.startLbd(h, "run", "--config", s.lbCfgs[i], "--pin-dir", s.pinDir(h), "--watch", "200ms")
	if err != nil {
		return err
	}
	if err := p.WaitForLog("lbd serving", 30*time.Second); err != nil {
		return fmt.Errorf("lbd run on %s: %w\n%s", h.Name, err, p.Output())
	}
	if i < len(s.lbProcs) {
		s.lbProcs[i] = p
	} else {
		s.lbProcs = append(s.lbProcs, p)
	}
	return nil
}

// startLbd starts the lbd binary with args on h, through s.wrap.
func (s *sandbox) startLbd(h *testbed.Host, args ...string) (*testbed.Process, error) {
	if len(s.wrap) == 0 {
		return s.fleet.Start(h, s.exe, args...)
	}
	return s.fleet.Start(h, s.wrap[0], append(append(slices.Clone(s.wrap[1:]), s.exe), args...)...)
}

// startServer serves HTTP on port 80 of every address of h, answering with h's name.
func (s *sandbox) startServer(h *testbed.Host) error {
	ln, err := h.Listen("tcp", fmt.Sprintf(":%d", s.vipPort))
	if err != nil {
		return fmt.Errorf("listen on %s: %w", h.Name, err)
	}
	name := h.Name
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\n", name)
	})}
	go func() { _ = srv.Serve(ln) }() // ends with http.ErrServerClosed when the test stops it
	s.servers[h.Name] = &backendServer{host: h, srv: srv, ln: ln}
	return nil
}

// StopServer closes backend name's service (its host stays up: only the port closes).
func (s *sandbox) StopServer(name string) error {
	b, ok := s.servers[name]
	if !ok {
		return fmt.Errorf("no backend %s", name)
	}
	return b.srv.Close()
}

// tally is the outcome of a batch of requests.
type tally struct {
	By       map[string]int // backend name → answered requests
	Failures int
	Errors   []string // first few
}

// Requests opens n new TCP connections from the client to the VIP, one HTTP GET each,
// with `parallel` in flight at once.
func (s *sandbox) Requests(ctx context.Context, n, parallel int) tally {
	return s.RequestsTo(ctx, netip.AddrPortFrom(s.vip, s.vipPort), n, parallel)
}

// RequestsTo is Requests to another VIP.
func (s *sandbox) RequestsTo(ctx context.Context, vip netip.AddrPort, n, parallel int) tally {
	t := tally{By: map[string]int{}}
	client := s.fleet.Client.HTTPClient(3 * time.Second)
	url := fmt.Sprintf("http://%s/", vip)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(parallel, 1))
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name, err := get(ctx, client, url)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Failures++
				if len(t.Errors) < 5 {
					t.Errors = append(t.Errors, err.Error())
				}
				return
			}
			t.By[name]++
		}()
	}
	wg.Wait()
	return t
}

// load is a client that keeps opening new connections to a VIP, one GET each, until it is
// stopped: what a test or the demo watches while a node stops.
type load struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	t    tally
}

// startLoad opens connections to vip, parallel at a time, until end.
func (s *sandbox) startLoad(ctx context.Context, vip netip.AddrPort, parallel int) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{}), t: tally{By: map[string]int{}}}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			tl := s.RequestsTo(ctx, vip, parallel, parallel)
			l.mu.Lock()
			for k, v := range tl.By {
				l.t.By[k] += v
			}
			l.t.Failures += tl.Failures
			l.t.Errors = append(l.t.Errors, tl.Errors[:min(len(tl.Errors), 5-min(len(l.t.Errors), 5))]...)
			l.mu.Unlock()
		}
	}()
	return l
}

// total is how many connections were answered or failed so far.
func (l *load) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.t.Failures
	for _, v := range l.t.By {
		n += v
	}
	return n
}

// end stops the load and returns what it saw (the first five errors).
func (l *load) end() tally {
	close(l.stop)
	<-l.done
	return l.t
}

func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// LBStatus reads LB node i's status API from inside its namespace.
func (s *sandbox) LBStatus(ctx context.Context, i int) (daemon.Status, error) {
	return fetchStatus(ctx, s.fleet.LBs[i].HTTPClient(3*time.Second), s.cfg.Node.APIAddr.String())
}

// BackendHostStats reads backend i's pinned counters.
func (s *sandbox) BackendHostStats(i int) (dataplane.BackendHostStats, error) {
	return dataplane.ReadBackendHostStats(s.pinDir(s.fleet.Backends[i]))
}

// WaitBackend polls LB node i's status until backend addr of the first VIP is in state
// ("active", "draining", "down"), and returns how long that took.
func (s *sandbox) WaitBackend(ctx context.Context, i int, addr netip.Addr, state string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		st, err := s.LBStatus(ctx, i)
		if err == nil && len(st.VIPs) > 0 {
			for _, b := range st.VIPs[0].Backends {
				if b.Address == addr.String() {
					last = b.State
					if b.State == state {
						return time.Since(start), nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("lb%d: backend %s still %q after %v, want %q", i, addr, last, timeout, state)
}

// StartServer (re)starts backend name's service.
func (s *sandbox) StartServer(name string) error {
	b, ok := s.servers[name]
	if !ok {
		return fmt.Errorf("no backend %s", name)
	}
	return s.startServer(b.host)
}

// Close stops every process and server and removes the fleet.
func (s *sandbox) Close() error {
	for _, b := range s.servers {
		b.srv.Close()
	}
	return s.fleet.Close()
}
