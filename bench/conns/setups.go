package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/lbdproj/lbd/internal/testbed"
	"github.com/vishvananda/netlink"
)

// vip is the address every setup serves on port 80; the backends are the fleet's be0..be2.
var vip = netip.MustParseAddr("198.18.0.10")

// setup is one way of reaching the backends, raised on a fresh fleet for each measurement.
type setup struct {
	key, name, desc string
	raise           func(*stand) error
	// the backends that must answer through the VIP before the measurement starts
	serving func(*stand) int
}

var setups = []setup{
	{key: "direct", name: "direct (no LB)",
		desc:  "no load balancer: the client's own ECMP route (per 5-tuple) over the 3 backends, each with the VIP on lo",
		raise: raiseDirect, serving: all},
	{key: "lbd", name: "lbd",
		desc:  "lbd run on the LB node (xdp_lb, IPIP, XDP_TX), lbd backend on each backend (decap, VIP restored on replies: DSR)",
		raise: raiseLbd, serving: all},
	{key: "floor", name: "floor: IPIP push + XDP_TX",
		desc:  "a trivial XDP forwarder in lbd's place (bench/bpf/txfloor.c: IPIP push, XDP_TX; the backend picked from the source port, no lookup), lbd backend on each backend",
		raise: raiseFloor, serving: all},
	{key: "haproxy", name: "HAProxy (TCP mode)",
		desc:  "Debian's haproxy on the LB node, mode tcp, roundrobin over the 3 backends, VIP on the node's lo (a full proxy: replies return through it)",
		raise: raiseHAProxy, serving: all},
	{key: "nftables", name: "nftables DNAT",
		desc:  "nftables on the LB node: DNAT to numgen inc mod 3 over the backends (conntrack); the backends route the client via the node, which forwards both ways",
		raise: raiseNftables, serving: all},
}

func all(s *stand) int { return len(s.fleet.Backends) }

// stand is a fleet raised for one measurement.
type stand struct {
	fleet   *testbed.Fleet
	procs   map[string][]*testbed.Process // by role: server, lbd, haproxy, …
	progs   map[string]*ebpf.Program      // BPF programs on the path, by name, for their run time
	closers []func() error
}

func newStand() (_ *stand, err error) {
	f, err := testbed.New(testbed.Options{LBs: 1, Backends: 3, Prefix: prefix})
	if err != nil {
		return nil, err
	}
	s := &stand{fleet: f, procs: map[string][]*testbed.Process{}, progs: map[string]*ebpf.Program{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.close())
		}
	}()
	// many short connections: the whole port range, and TIME_WAIT ports reused
	if err := f.Client.Sysctl("net/ipv4/ip_local_port_range", "1024 65535"); err != nil {
		return nil, err
	}
	if err := f.Client.Sysctl("net/ipv4/tcp_tw_reuse", "1"); err != nil {
		return nil, err
	}
	for _, h := range f.Backends {
		p, err := f.Start(h, self, "-serve", fmt.Sprintf(":%d", 80), "-name", h.Name)
		if err != nil {
			return nil, err
		}
		s.procs["servers"] = append(s.procs["servers"], p)
	}
	return s, nil
}

func (s *stand) close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	for _, p := range s.progs {
		p.Close()
	}
	errs = append(errs, s.fleet.Close())
	if left := s.fleet.Leftovers(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %v", left))
	}
	return errors.Join(errs...)
}

// addVIP puts the VIP on h's lo.
func addVIP(h *testbed.Host) error {
	nh, err := h.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err != nil {
		return err
	}
	return nh.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(32, 32)}})
}

func raiseDirect(s *stand) error {
	f := s.fleet
	for _, h := range f.Backends {
		if err := addVIP(h); err != nil {
			return err
		}
	}
	// hash by 5-tuple: under policy 1 a local socket's txhash is used (docs/ARCHITECTURE.md)
	if err := f.Client.Sysctl("net/ipv4/fib_multipath_hash_policy", "3"); err != nil {
		return err
	}
	if err := f.Client.Sysctl("net/ipv4/fib_multipath_hash_fields", "0x37"); err != nil {
		return err
	}
	nh, err := f.Client.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	r := &netlink.Route{Dst: &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	for _, h := range f.Backends {
		r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{LinkIndex: f.Client.Ifindex, Gw: h.Addr.AsSlice()})
	}
	return nh.RouteReplace(r)
}

// startBackends runs lbd backend on hosts, taking tunnelled packets from the LB node.
func (s *stand) startBackends(hosts []*testbed.Host) error {
	lb := s.fleet.LBs[0]
	for _, h := range hosts {
		pin := filepath.Join(s.fleet.PinDir, h.Name)
		p, err := s.fleet.Start(h, *lbdBin, "backend", "--interface", h.Link, "--pin-dir", pin,
			"--lb-sources", lb.Addr.String(), "--vips", vip.String(), "--api", "")
		if err != nil {
			return err
		}
		if err := p.WaitForLog("backend ready", 20*time.Second); err != nil {
			return fmt.Errorf("lbd backend on %s: %w\n%s", h.Name, err, p.Output())
		}
		s.procs["lbd backend"] = append(s.procs["lbd backend"], p)
		s.pinnedProg("xdp_decap", filepath.Join(pin, "xdp_decap_link"))
		s.pinnedProg("tc_egress", filepath.Join(pin, "tc_egress_link"))
	}
	return nil
}

// pinnedProg keeps the program of the pinned link at path under name (several backends'
// programs of one name are kept as name, name#1, …). Failing, it keeps nothing: the
// programs' run time is a diagnosis, not the measurement.
func (s *stand) pinnedProg(name, path string) {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return
	}
	p, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return
	}
	key := name
	for i := 1; s.progs[key] != nil; i++ {
		key = fmt.Sprintf("%s#%d", name, i)
	}
	s.progs[key] = p
}

func raiseLbd(s *stand) error {
	f := s.fleet
	if err := s.startBackends(f.Backends); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node:\n  interface: %s\nvips:\n  - name: bench\n    address: %s\n    port: 80\n    protocol: tcp\n    backends:\n",
		f.LBs[0].Link, vip)
	for _, h := range f.Backends {
		fmt.Fprintf(&b, "      - address: %s\n", h.Addr)
	}
	b.WriteString("    health:\n      type: tcp\n")
	cfg := filepath.Join(f.Dir, "lbd.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		return err
	}
	pin := filepath.Join(f.PinDir, "lb")
	p, err := f.Start(f.LBs[0], *lbdBin, "run", "--config", cfg, "--pin-dir", pin)
	if err != nil {
		return err
	}
	if err := p.WaitForLog("lbd serving", 30*time.Second); err != nil {
		return fmt.Errorf("lbd run: %w\n%s", err, p.Output())
	}
	s.procs["lbd run"] = append(s.procs["lbd run"], p)
	s.pinnedProg("xdp_lb", filepath.Join(pin, "xdp_lb_link"))
	return f.RouteVIP(netip.PrefixFrom(vip, 32))
}

func raiseFloor(s *stand) error {
	f := s.fleet
	lb := f.LBs[0]
	if len(f.Backends) != 3 {
		return fmt.Errorf("the floor program serves 3 backends, the fleet has %d", len(f.Backends))
	}
	if err := s.startBackends(f.Backends); err != nil {
		return err
	}
	spec, err := loadTxfloor()
	if err != nil {
		return err
	}
	var macs [3][6]byte
	var dsts [3]uint32
	for i, h := range f.Backends {
		macs[i], dsts[i] = [6]byte(h.MAC), be32(h.Addr)
	}
	for name, v := range map[string]any{
		"dst_macs": macs, "src_mac": [6]byte(lb.MAC),
		"vip": be32(vip), "encap_src": be32(lb.Addr), "encap_dsts": dsts,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("floor: set %s: %w", name, err)
		}
	}
	var objs txfloorObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return fmt.Errorf("load floor: %w", err)
	}
	s.closers = append(s.closers, objs.Close)
	var l link.Link
	err = lb.Do(func() (err error) {
		l, err = link.AttachXDP(link.XDPOptions{Program: objs.XdpIpipTxFloor, Interface: lb.Ifindex, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		return fmt.Errorf("attach floor: %w", err)
	}
	s.closers = append(s.closers, l.Close)
	if p, err := objs.XdpIpipTxFloor.Clone(); err == nil {
		s.progs["floor"] = p
	}
	return f.RouteVIP(netip.PrefixFrom(vip, 32))
}

func raiseHAProxy(s *stand) error {
	f := s.fleet
	lb := f.LBs[0]
	if err := addVIP(lb); err != nil {
		return err
	}
	var b strings.Builder
	// nbthread: one per CPU, as HAProxy picks by default; the timeouts only bound a stuck
	// connection
	b.WriteString("global\n  maxconn 4096\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\n")
	fmt.Fprintf(&b, "frontend vip\n  bind %s:80\n  default_backend web\n\nbackend web\n  balance roundrobin\n", vip)
	for _, h := range f.Backends {
		fmt.Fprintf(&b, "  server %s %s:80\n", h.Name, h.Addr)
	}
	cfg := filepath.Join(f.Dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		return err
	}
	p, err := f.Start(lb, "haproxy", "-db", "-f", cfg)
	if err != nil {
		return err
	}
	s.procs["haproxy"] = append(s.procs["haproxy"], p)
	return f.RouteVIP(netip.PrefixFrom(vip, 32))
}

func raiseNftables(s *stand) error {
	f := s.fleet
	lb := f.LBs[0]
	// the node forwards out of the interface the packet came in by: no redirects
	for k, v := range map[string]string{
		"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/send_redirects": "0",
		"net/ipv4/conf/" + lb.Link + "/send_redirects": "0",
	} {
		if err := lb.Sysctl(k, v); err != nil {
			return err
		}
	}
	var b strings.Builder
	b.WriteString("table ip lbdbench {\n  chain pre {\n    type nat hook prerouting priority dstnat;\n")
	fmt.Fprintf(&b, "    ip daddr %s tcp dport 80 dnat to numgen inc mod %d map {", vip, len(f.Backends))
	for i, h := range f.Backends {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %d : %s", i, h.Addr)
	}
	b.WriteString(" }\n  }\n}\n")
	cmd := lb.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, out)
	}
	// replies to the client go back through the node, which undoes the DNAT
	for _, h := range f.Backends {
		if err := h.RouteVia(netip.PrefixFrom(f.Client.Addr, 32), lb.Addr); err != nil {
			return err
		}
	}
	return f.RouteVIP(netip.PrefixFrom(vip, 32))
}

// waitServing sends requests through the VIP until n distinct backends have answered.
func (s *stand) waitServing(n int, timeout time.Duration) error {
	c := s.fleet.Client.HTTPClient(time.Second)
	seen := map[string]bool{}
	deadline := time.Now().Add(timeout)
	var last error
	for tries := 0; time.Now().Before(deadline) && tries < 100000; tries++ {
		resp, err := c.Get(fmt.Sprintf("http://%s/", vip))
		if err != nil {
			last = err
			time.Sleep(50 * time.Millisecond)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			seen[strings.TrimSpace(string(body))] = true
		}
		if len(seen) >= n {
			return nil
		}
	}
	return fmt.Errorf("%d of %d backends answered through %s in %v (last error: %v)", len(seen), n, vip, timeout, last)
}

// be32 is an IPv4 address as a host-order number (the programs convert it).
func be32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
