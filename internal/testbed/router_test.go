package testbed_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/lbdproj/lbd/internal/testbed"
	"github.com/lbdproj/lbd/internal/wait"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestRouterTopology(t *testing.T) {
	f := newFleet(t, testbed.Options{Router: true, LBs: 2, Backends: 1})
	r, c := f.Router, f.Client
	if r == nil {
		t.Fatal("no router")
	}
	if want := []*testbed.Host{c, r, f.LBs[0], f.LBs[1], f.Backends[0]}; !slices.Equal(f.Hosts(), want) {
		t.Errorf("Hosts() = %v, want %v", f.Hosts(), want)
	}
	if want := testbed.TestPrefix + "-" + f.ID + "-router"; r.NS != want {
		t.Errorf("router NS %q, want %q", r.NS, want)
	}
	for _, x := range []struct {
		h           *testbed.Host
		addr, addr6 string
	}{
		{c, "198.18.1.2", "2001:db8:0:1::2"},
		{r, "198.18.0.1", "2001:db8::1"},
		{f.LBs[0], "198.18.0.2", "2001:db8::2"},
		{f.Backends[0], "198.18.0.11", "2001:db8::11"},
	} {
		if x.h.Addr.String() != x.addr || x.h.Addr6.String() != x.addr6 {
			t.Errorf("%s: addresses %s %s, want %s %s", x.h.Name, x.h.Addr, x.h.Addr6, x.addr, x.addr6)
		}
	}
	if !testbed.ClientNet4.Contains(c.Addr) || !testbed.ClientNet6.Contains(c.Addr6) || testbed.Net4.Overlaps(testbed.ClientNet4) || testbed.Net6.Overlaps(testbed.ClientNet6) {
		t.Errorf("client %s %s vs segments %s %s / %s %s", c.Addr, c.Addr6, testbed.ClientNet4, testbed.ClientNet6, testbed.Net4, testbed.Net6)
	}

	// Links, MTUs and the router's client leg.
	linkIn := func(h *testbed.Host, name string) netlink.Link {
		t.Helper()
		nh, err := h.Netlink()
		if err != nil {
			t.Fatal(err)
		}
		defer nh.Close()
		l, err := nh.LinkByName(name)
		if err != nil {
			t.Fatalf("%s %s: %v", h.Name, name, err)
		}
		return l
	}
	for _, x := range []struct {
		h    *testbed.Host
		name string
		mtu  int
	}{
		{c, "eth0", testbed.ClientMTU},
		{r, "eth1", testbed.ClientMTU},
		{r, "eth0", testbed.FabricMTU},
		{f.Switch, r.Peer, testbed.FabricMTU},
	} {
		l := linkIn(x.h, x.name)
		if got := l.Attrs().MTU; got != x.mtu {
			t.Errorf("%s %s: MTU %d, want %d", x.h.Name, x.name, got, x.mtu)
		}
		if xdp := l.Attrs().Xdp; xdp != nil && xdp.Attached {
			t.Errorf("%s %s: an XDP program is attached; the router path needs none", x.h.Name, x.name)
		}
	}
	if c.Peer != "eth1" {
		t.Errorf("client peer %q, want the router's eth1", c.Peer)
	}
	rh, err := r.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer rh.Close()
	addrs, err := rh.AddrList(linkIn(r, "eth1"), netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var leg []string
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			leg = append(leg, a.IPNet.String())
		}
	}
	slices.Sort(leg)
	if want := []string{"198.18.1.1/24", "2001:db8:0:1::1/64"}; !slices.Equal(leg, want) {
		t.Errorf("router eth1 addresses %v, want %v", leg, want)
	}

	if on, err := c.TxChecksum(); err != nil || on {
		t.Errorf("client tx checksum on=%v (%v), want off", on, err)
	}

	// The router's sysctls, read in its namespace.
	err = r.Do(func() error {
		for k, want := range testbed.RouterSysctls {
			b, err := os.ReadFile(filepath.Join("/proc/sys", k))
			if err != nil {
				return err
			}
			if got := strings.TrimSpace(string(b)); got != want {
				t.Errorf("router %s = %s, want %s", k, got, want)
			}
		}
		for _, dev := range []string{"eth0", "eth1"} {
			b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + dev + "/forwarding")
			if err != nil {
				return err
			}
			if strings.TrimSpace(string(b)) != "1" {
				t.Errorf("router %s: ipv6 forwarding off", dev)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Routes: the client's default via the router, the bridge hosts'
	// route to the client's segment via the router's bridge leg.
	for _, x := range []struct {
		from *testbed.Host
		to   netip.Addr
		via  netip.Addr
	}{
		{c, f.Backends[0].Addr, netip.MustParseAddr("198.18.1.1")},
		{c, netip.MustParseAddr("198.19.0.10"), netip.MustParseAddr("198.18.1.1")},
		{c, f.Backends[0].Addr6, netip.MustParseAddr("2001:db8:0:1::1")},
		{f.Backends[0], c.Addr, r.Addr},
		{f.Backends[0], c.Addr6, r.Addr6},
		{f.LBs[1], c.Addr, r.Addr},
		{f.LBs[1], c.Addr6, r.Addr6},
	} {
		if gw := routeGw(t, x.from, x.to); gw != x.via {
			t.Errorf("%s: route to %s via %s, want via %s", x.from.Name, x.to, gw, x.via)
		}
	}
}

// routeGw returns the gateway h's kernel picks for dst.
func routeGw(t *testing.T, h *testbed.Host, dst netip.Addr) netip.Addr {
	t.Helper()
	nh, err := h.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	rs, err := nh.RouteGet(dst.AsSlice())
	if err != nil || len(rs) != 1 {
		t.Fatalf("%s: route get %s: %v %v", h.Name, dst, rs, err)
	}
	gw, _ := netip.AddrFromSlice(rs[0].Gw)
	return gw.Unmap()
}

// vipNexthops returns the gateways of the router's route to prefix.
func vipNexthops(t *testing.T, f *testbed.Fleet, prefix netip.Prefix) []netip.Addr {
	t.Helper()
	nh, err := f.Router.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	family := netlink.FAMILY_V4
	if prefix.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	rs, err := nh.RouteListFiltered(family, &netlink.Route{Dst: testbed.IPNet(prefix)}, netlink.RT_FILTER_DST)
	if err != nil {
		t.Fatal(err)
	}
	var gws []netip.Addr
	add := func(ip net.IP, ifindex int) {
		if ifindex != f.Router.Ifindex {
			t.Errorf("route to %s: nexthop %s on ifindex %d, want %d", prefix, ip, ifindex, f.Router.Ifindex)
		}
		a, _ := netip.AddrFromSlice(ip)
		gws = append(gws, a.Unmap())
	}
	for _, r := range rs {
		if r.Gw != nil {
			add(r.Gw, r.LinkIndex)
		}
		for _, p := range r.MultiPath {
			add(p.Gw, p.LinkIndex)
		}
	}
	slices.SortFunc(gws, netip.Addr.Compare)
	return gws
}

// serveName makes vip an address of every LB node (on lo) and listens on
// vip:port there, answering each connection with the node's name.
func serveName(t *testing.T, f *testbed.Fleet, vip netip.Addr, port uint16) {
	t.Helper()
	for _, lb := range f.LBs {
		nh, err := lb.Netlink()
		if err != nil {
			t.Fatal(err)
		}
		lo, err := nh.LinkByName("lo")
		if err == nil {
			err = nh.AddrAdd(lo, &netlink.Addr{IPNet: testbed.IPNet(netip.PrefixFrom(vip, vip.BitLen())), Flags: unix.IFA_F_NODAD})
		}
		nh.Close()
		if err != nil {
			t.Fatalf("%s: add %s to lo: %v", lb.Name, vip, err)
		}
		l, err := lb.Listen("tcp", netip.AddrPortFrom(vip, port).String())
		if err != nil {
			t.Fatalf("%s: listen: %v", lb.Name, err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					_, _ = io.WriteString(c, lb.Name+"\n")
					_, _ = io.Copy(io.Discard, c) // until the client's RST
				}()
			}
		}()
	}
}

// askVIP opens a connection from the client to vip:port, from srcPort if
// not 0, and returns the name of the LB node that answered. The client
// aborts the connection (linger 0: RST, no TIME_WAIT), so the same source
// port can be used again at once.
func askVIP(f *testbed.Fleet, vip netip.AddrPort, srcPort int) (string, error) {
	d := f.Client.Dialer()
	d.Timeout = 3 * time.Second
	if srcPort != 0 {
		src := f.Client.Addr
		if vip.Addr().Is6() {
			src = f.Client.Addr6
		}
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice(), Port: srcPort}
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			})
			return errors.Join(err, serr)
		}
	}
	c, err := d.Dial("tcp", vip.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetLinger(0)
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	name, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from %s via port %d: %w", vip, srcPort, err)
	}
	return strings.TrimSuffix(name, "\n"), nil
}

// spread opens n new connections to vip and counts them by LB node; every
// connection must succeed.
func spread(t *testing.T, f *testbed.Fleet, vip netip.AddrPort, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := range n {
		name, err := askVIP(f, vip, 0)
		if err != nil {
			t.Fatalf("connection %d to %s: %v", i, vip, err)
		}
		got[name]++
	}
	return got
}

// TestRouterECMP: the router spreads new connections to a VIP over the LB
// nodes by 5-tuple; a given 5-tuple always lands on the same node; RouteVIP
// changes the set of nodes for new connections.
func TestRouterECMP(t *testing.T) {
	f := newFleet(t, testbed.Options{Router: true, LBs: 3, Backends: 1})
	lbs := func(hs ...*testbed.Host) (names []string, addrs4, addrs6 []netip.Addr) {
		for _, h := range hs {
			names = append(names, h.Name)
			addrs4 = append(addrs4, h.Addr)
			addrs6 = append(addrs6, h.Addr6)
		}
		return names, addrs4, addrs6
	}
	for _, vip := range []netip.AddrPort{
		netip.MustParseAddrPort("198.19.0.10:8080"),
		netip.MustParseAddrPort("[2001:db8:1::10]:8080"),
	} {
		t.Run(vip.Addr().String(), func(t *testing.T) {
			serveName(t, f, vip.Addr(), vip.Port())
			prefix := netip.PrefixFrom(vip.Addr(), vip.Addr().BitLen())
			checkRoute := func(hs ...*testbed.Host) {
				t.Helper()
				_, want4, want6 := lbs(hs...)
				want := want4
				if vip.Addr().Is6() {
					want = want6
				}
				slices.SortFunc(want, netip.Addr.Compare)
				if got := vipNexthops(t, f, prefix); !slices.Equal(got, want) {
					t.Fatalf("router's route to %s via %v, want via %v", prefix, got, want)
				}
			}
			if err := f.RouteVIP(prefix); err != nil {
				t.Fatal(err)
			}
			if err := f.RouteVIP(prefix); err != nil { // replaces
				t.Fatal(err)
			}
			checkRoute(f.LBs...)

			// (1) 60 new connections spread over at least 2 of the 3 nodes.
			got := spread(t, f, vip, 60)
			t.Logf("60 connections to %s: %v", vip, got)
			if len(got) < 2 {
				t.Errorf("60 connections landed on %v, want at least 2 LB nodes", got)
			}

			// The same 5-tuple always lands on the same node.
			for port := 20001; port <= 20006; port++ {
				var first string
				for i := range 4 {
					name, err := askVIP(f, vip, port)
					if err != nil {
						t.Fatalf("from port %d, attempt %d: %v", port, i, err)
					}
					if i == 0 {
						first = name
					} else if name != first {
						t.Errorf("from port %d: attempt %d on %s, attempt 0 on %s", port, i, name, first)
					}
				}
			}

			// (2) A subset takes all new connections, each of its nodes some.
			sub := []*testbed.Host{f.LBs[0], f.LBs[2]}
			if err := f.RouteVIP(prefix, sub...); err != nil {
				t.Fatal(err)
			}
			checkRoute(sub...)
			names, _, _ := lbs(sub...)
			got = spread(t, f, vip, 40)
			t.Logf("40 connections to %s via %v: %v", vip, names, got)
			for name := range got {
				if !slices.Contains(names, name) {
					t.Errorf("a connection landed on %s after RouteVIP(%v): %v", name, names, got)
				}
			}
			if len(got) != 2 {
				t.Errorf("40 connections via %v landed on %v, want both", names, got)
			}

			// A node that left: one nexthop.
			if err := f.RouteVIP(prefix, f.LBs[1]); err != nil {
				t.Fatal(err)
			}
			checkRoute(f.LBs[1])
			if got := spread(t, f, vip, 10); got[f.LBs[1].Name] != 10 {
				t.Errorf("10 connections via lb1 only landed on %v", got)
			}

			// And back to all of them.
			if err := f.RouteVIP(prefix); err != nil {
				t.Fatal(err)
			}
			checkRoute(f.LBs...)
			if got := spread(t, f, vip, 30); len(got) < 2 {
				t.Errorf("30 connections via all nodes landed on %v", got)
			}
		})
	}
}

func TestRouteVIPErrors(t *testing.T) {
	f := newFleet(t, testbed.Options{Router: true, LBs: 2, Backends: 1})
	other := newFleet(t, testbed.Options{LBs: 1, Backends: 1})
	p := netip.MustParsePrefix("198.19.0.0/24")
	for _, c := range []struct {
		name string
		via  []*testbed.Host
	}{
		{"nil", []*testbed.Host{nil}},
		{"client", []*testbed.Host{f.Client}},
		{"router", []*testbed.Host{f.Router}},
		{"switch", []*testbed.Host{f.Switch}},
		{"other fleet", []*testbed.Host{other.LBs[0]}},
		{"twice", []*testbed.Host{f.LBs[0], f.LBs[0]}},
	} {
		if err := f.RouteVIP(p, c.via...); err == nil {
			t.Errorf("RouteVIP via %s accepted", c.name)
		}
	}
	if err := f.RouteVIP(netip.Prefix{}); err == nil {
		t.Error("invalid prefix accepted")
	}
	// A VIP prefix, not a host route: masked.
	if err := f.RouteVIP(netip.MustParsePrefix("198.19.0.77/24")); err != nil {
		t.Fatal(err)
	}
	if got := vipNexthops(t, f, p); len(got) != 2 {
		t.Errorf("route to %s via %v, want both LBs", p, got)
	}
}

// TestRouteVIPWithoutRouter: without a router, RouteVIP routes on the client
// via the first node given, as Host.RouteVia does.
func TestRouteVIPWithoutRouter(t *testing.T) {
	f := newFleet(t, testbed.Options{LBs: 2, Backends: 1})
	if f.Router != nil {
		t.Fatal("a router without testbed.Options.Router")
	}
	for _, p := range []netip.Prefix{netip.MustParsePrefix("198.19.0.0/24"), netip.MustParsePrefix("2001:db8:1::/64")} {
		dst := p.Addr().Next()
		gw := func(h *testbed.Host) netip.Addr {
			if p.Addr().Is6() {
				return h.Addr6
			}
			return h.Addr
		}
		if err := f.RouteVIP(p); err != nil {
			t.Fatal(err)
		}
		if got := routeGw(t, f.Client, dst); got != gw(f.LBs[0]) {
			t.Errorf("route to %s via %s, want lb0", p, got)
		}
		if err := f.RouteVIP(p, f.LBs[1], f.LBs[0]); err != nil {
			t.Fatal(err)
		}
		if got := routeGw(t, f.Client, dst); got != gw(f.LBs[1]) {
			t.Errorf("route to %s via %s, want lb1", p, got)
		}
	}
}

// TestRouterClientBackend: plain TCP both ways between the client and the
// backends, across the router.
func TestRouterClientBackend(t *testing.T) {
	f := newFleet(t, testbed.Options{Router: true, LBs: 1, Backends: 2})
	_, tx0, err := f.Router.LinkStats()
	if err != nil {
		t.Fatal(err)
	}
	for _, be := range f.Backends {
		for _, a := range []netip.Addr{be.Addr, be.Addr6} {
			l, err := be.Listen("tcp", netip.AddrPortFrom(a, 8080).String())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			echo(t, l)
			exchange(t, f.Client, l.Addr().String())
		}
	}
	for _, a := range []netip.Addr{f.Client.Addr, f.Client.Addr6} {
		l, err := f.Client.Listen("tcp", netip.AddrPortFrom(a, 9090).String())
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		echo(t, l)
		for _, be := range f.Backends {
			exchange(t, be, l.Addr().String())
		}
	}
	// The client's packets left the router on its bridge leg.
	if _, tx, err := f.Router.LinkStats(); err != nil || tx < tx0+8 {
		t.Errorf("router eth0 tx %d → %d (%v): not forwarded by the router", tx0, tx, err)
	}
}

// TestRouterXDPTxReachesClient: what an LB node sends back with XDP_TX on
// its veth reaches the client through the router: the router only forwards,
// the XDP_PASS program on the LB's switch-side peer is all XDP_TX needs.
func TestRouterXDPTxReachesClient(t *testing.T) {
	f := newFleet(t, testbed.Options{Router: true, LBs: 2, Backends: 1})
	const port = 4242
	prog := reflector(t, port)
	for _, lb := range f.LBs {
		err := lb.Do(func() error {
			l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: lb.Ifindex, Flags: link.XDPDriverMode})
			if err == nil {
				t.Cleanup(func() { l.Close() })
			}
			return err
		})
		if err != nil {
			t.Fatalf("attach reflector on %s: %v", lb.Name, err)
		}
		c, err := f.Client.Dialer().Dial("udp4", netip.AddrPortFrom(lb.Addr, port).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := []byte("reflect me via the router and " + lb.Name)
		buf := make([]byte, 64)
		var n int
		err = wait.Until(3*time.Second, 10*time.Millisecond, func() (bool, error) {
			if _, err := c.Write(msg); err != nil {
				return false, err
			}
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err = c.Read(buf)
			return err == nil, err
		})
		if err != nil {
			t.Fatalf("no XDP_TX answer from %s through the router: %v", lb.Name, err)
		}
		if string(buf[:n]) != string(msg) {
			t.Fatalf("answer %q, want %q", buf[:n], msg)
		}
	}
}
