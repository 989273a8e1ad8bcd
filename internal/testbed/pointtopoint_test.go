package testbed_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/testbed"
	"github.com/lbdproj/lbd/internal/testbed/testbedtest"
	"github.com/vishvananda/netlink"
)

// TestPointToPointTopology: client ─ lb0 ─ be0 from two veths, no switch, IPv4 only, the
// addresses, MTUs and queues the throughput benchmark relies on.
func TestPointToPointTopology(t *testing.T) {
	f := newFleet(t, testbed.Options{PointToPoint: true})
	c, lb, be := f.Client, f.LBs[0], f.Backends[0]
	if f.Switch != nil || f.Router != nil || len(f.LBs) != 1 || len(f.Backends) != 1 {
		t.Fatalf("switch %v, router %v, %d LBs, %d backends; want client, lb0, be0 only", f.Switch, f.Router, len(f.LBs), len(f.Backends))
	}
	if want := []*testbed.Host{c, lb, be}; !slices.Equal(f.Hosts(), want) {
		t.Errorf("Hosts() = %v, want %v", f.Hosts(), want)
	}
	for _, h := range f.Hosts() {
		if want := testbed.TestPrefix + "-" + f.ID + "-" + h.Name; h.NS != want {
			t.Errorf("%s: NS %q, want %q", h.Name, h.NS, want)
		}
		if h.Addr6.IsValid() {
			t.Errorf("%s: IPv6 address %s in a point-to-point fleet", h.Name, h.Addr6)
		}
	}
	if c.Peer != "eth1" || be.Peer != "eth0" || lb.Link != "eth0" {
		t.Errorf("client's veth ends in lb0 as %q, be0's as %q; lb0's Link %q", c.Peer, be.Peer, lb.Link)
	}

	// every end of both veths: where it is, its IPv4 address (and no other), MTU, queues
	for _, x := range []struct {
		h    *testbed.Host
		name string
		addr string
		mtu  int
	}{
		{c, "eth0", "198.18.1.2/24", testbed.ClientMTU},
		{lb, "eth1", "198.18.1.1/24", testbed.ClientMTU},
		{lb, "eth0", "198.18.0.2/24", testbed.FabricMTU},
		{be, "eth0", "198.18.0.11/24", testbed.FabricMTU},
	} {
		nh, err := x.h.Netlink()
		if err != nil {
			t.Fatal(err)
		}
		l, err := nh.LinkByName(x.name)
		if err != nil {
			nh.Close()
			t.Fatalf("%s %s: %v", x.h.Name, x.name, err)
		}
		addrs, err := nh.AddrList(l, netlink.FAMILY_ALL)
		nh.Close()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range addrs {
			got = append(got, a.IPNet.String())
		}
		if !slices.Equal(got, []string{x.addr}) {
			t.Errorf("%s %s: addresses %v, want only %s", x.h.Name, x.name, got, x.addr)
		}
		a := l.Attrs()
		if a.MTU != x.mtu || a.OperState != netlink.OperUp {
			t.Errorf("%s %s: MTU %d, state %s; want %d, up", x.h.Name, x.name, a.MTU, a.OperState, x.mtu)
		}
		if a.NumTxQueues != runtime.NumCPU() || a.NumRxQueues != runtime.NumCPU() {
			t.Errorf("%s %s: %d/%d tx/rx queues, want %d (XDP on veth)", x.h.Name, x.name, a.NumTxQueues, a.NumRxQueues, runtime.NumCPU())
		}
		if a.Xdp != nil && a.Xdp.Attached {
			t.Errorf("%s %s: an XDP program is attached; the user attaches its own", x.h.Name, x.name)
		}
		ifc, err := x.h.Interface(x.name)
		if err != nil {
			t.Fatal(err)
		}
		if ifc.Index != a.Index || ifc.HardwareAddr.String() != a.HardwareAddr.String() {
			t.Errorf("%s %s: Interface says index %d MAC %s, netlink %d %s", x.h.Name, x.name, ifc.Index, ifc.HardwareAddr, a.Index, a.HardwareAddr)
		}
		if x.name == x.h.Link && (x.h.Ifindex != a.Index || x.h.MAC.String() != a.HardwareAddr.String()) {
			t.Errorf("%s: Ifindex %d MAC %s, want %d %s", x.h.Name, x.h.Ifindex, x.h.MAC, a.Index, a.HardwareAddr)
		}
	}
	err := lb.Do(func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6")
		if strings.TrimSpace(string(b)) != "1" {
			t.Errorf("lb0: IPv6 on (%q, %v)", b, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Interface("eth9"); err == nil {
		t.Error("Interface found eth9 in lb0")
	}
}

// TestPointToPointReach: each end reaches lb0 on its own segment, and nothing crosses lb0
// without XDP: no routes, no forwarding.
func TestPointToPointReach(t *testing.T) {
	f := newFleet(t, testbed.Options{PointToPoint: true})
	c, lb, be := f.Client, f.LBs[0], f.Backends[0]
	for _, addr := range []netip.Addr{netip.MustParseAddr("198.18.1.1"), lb.Addr} {
		l, err := lb.Listen("tcp", netip.AddrPortFrom(addr, 8080).String())
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		echo(t, l)
		from := c
		if addr == lb.Addr {
			from = be
		}
		exchange(t, from, l.Addr().String())
	}
	l, err := be.Listen("tcp", netip.AddrPortFrom(be.Addr, 8080).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if conn, err := c.DialContext(ctx, "tcp", l.Addr().String()); err == nil {
		conn.Close()
		t.Fatalf("client reached be0 at %s across lb0 without XDP", l.Addr())
	} else if !strings.Contains(err.Error(), "network is unreachable") {
		t.Errorf("client to be0: %v, want network is unreachable (no route)", err)
	}
	if err := f.RouteVIP(netip.MustParsePrefix("198.19.0.0/24")); err == nil {
		t.Error("RouteVIP in a point-to-point fleet succeeded")
	}
}

func TestPointToPointOptions(t *testing.T) {
	testbedtest.SkipIfNotRoot(t)
	for _, o := range []testbed.Options{
		{PointToPoint: true, Router: true},
		{PointToPoint: true, LBs: 2},
		{PointToPoint: true, Backends: 3},
	} {
		o.Prefix = testbed.TestPrefix
		if f, err := testbed.New(o); err == nil {
			f.Close()
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

func TestPointToPointCloseRemovesEverything(t *testing.T) {
	testbedtest.SkipIfNotRoot(t)
	f, err := testbed.New(testbed.Options{Prefix: testbed.TestPrefix, PointToPoint: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Start(f.LBs[0], "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	if left := f.Leftovers(); len(left) != 3+2 {
		t.Errorf("live fleet: Leftovers = %v, want its 3 namespaces, directory and lock file", left)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if left := f.Leftovers(); len(left) > 0 {
		t.Errorf("after Close: Leftovers = %v", left)
	}
	for _, h := range f.Hosts() {
		if _, err := os.Stat(filepath.Join("/run/netns", h.NS)); !os.IsNotExist(err) {
			t.Errorf("%s still there (%v)", h.NS, err)
		}
	}
}
