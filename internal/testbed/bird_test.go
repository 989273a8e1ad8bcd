package testbed_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/testbed"
)

// BIRD runs on the router with configs/bird.conf, its LB node sessions written for the fleet;
// NextHops sees only what BIRD installs, and FlowNextHop the router's choice for one flow.
func TestBIRD(t *testing.T) {
	f := newFleet(t, testbed.Options{Router: true, LBs: 2, Backends: 1})
	p, err := f.StartBIRD(testbed.BIRDOptions{BFD: []*testbed.Host{f.LBs[0]}, HoldTime: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if p.Exited() || p.Host != f.Router {
		t.Fatalf("bird exited or runs on %s:\n%s", p.Host.Name, p.Output())
	}
	conf, err := os.ReadFile(filepath.Join(f.Dir, "bird", "bird.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"merge paths on;",
		"if (65535, 0) ~ bgp_community then bgp_local_pref = 0;",
		"\thold time 3;\n",
		"protocol bgp lb0 from lbd_node {\n\tneighbor 198.18.0.2 as 65001;\n\tbfd on;\n}\n",
		"protocol bgp lb0_v6 from lbd_node6 {\n\tneighbor 2001:db8::2 as 65001;\n\tbfd on;\n}\n",
		"protocol bgp lb1 from lbd_node {\n\tneighbor 198.18.0.3 as 65001;\n}\n",
	} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("bird.conf lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(string(conf), "198.18.0.4") || strings.Contains(string(conf), "hold time 9") {
		t.Errorf("bird.conf keeps the example's nodes or hold time:\n%s", conf)
	}

	// a static multipath route: not BIRD's, so NextHops does not count it
	vip := netip.MustParseAddr("198.19.0.1")
	if err := f.RouteVIP(netip.PrefixFrom(vip, 32), f.LBs...); err != nil {
		t.Fatal(err)
	}
	if nh, err := f.NextHops(vip); err != nil || len(nh) != 0 {
		t.Errorf("NextHops = %v, %v; want none (the only route is static)", nh, err)
	}
	// the router spreads flows over both nodes and keeps each flow on one
	seen := map[netip.Addr]int{}
	for port := uint16(40000); port < 40064; port++ {
		src := netip.AddrPortFrom(f.Client.Addr, port)
		dst := netip.AddrPortFrom(vip, 80)
		a, err := f.FlowNextHop(src, dst, 6)
		if err != nil {
			t.Fatal(err)
		}
		b, err := f.FlowNextHop(src, dst, 6)
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Fatalf("flow from port %d: next hop %s, then %s", port, a, b)
		}
		seen[a]++
	}
	lbs := []netip.Addr{f.LBs[0].Addr, f.LBs[1].Addr}
	for a, n := range seen {
		if !slices.Contains(lbs, a) {
			t.Errorf("next hop %s (%d flows) is no LB node", a, n)
		}
	}
	if len(seen) != 2 {
		t.Errorf("64 flows took next hops %v, want both LB nodes", seen)
	}
}
