package daemon

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/config"
)

// A reload may change VIPs and backends but not what the data path fixed at load time.
func TestCheckReload(t *testing.T) {
	old := mustParse(t, testConfig).Node
	for _, tc := range []struct {
		name    string
		change  func(*config.Node)
		refused bool
	}{
		{"nothing", func(*config.Node) {}, false},
		{"api_addr", func(n *config.Node) { n.APIAddr = netip.MustParseAddrPort("127.0.0.1:9999") }, false},
		{"name", func(n *config.Node) { n.Name = "lb2" }, false},
		{"interface", func(n *config.Node) { n.Interface = "eth1" }, true},
		{"pin_dir", func(n *config.Node) { n.PinDir = "/sys/fs/bpf/other" }, true},
		{"hash_seed", func(n *config.Node) { n.HashSeed++ }, true},
		{"encap_source", func(n *config.Node) { n.EncapSource = netip.MustParseAddr("198.18.0.2") }, true},
		{"encap_source6", func(n *config.Node) { n.EncapSource6 = netip.MustParseAddr("2001:db8::2") }, true},
	} {
		n := old
		tc.change(&n)
		err := checkReload(old, n)
		if refused := errors.Is(err, ErrRestartNeeded); refused != tc.refused || (err != nil && !refused) {
			t.Errorf("%s: %v, want refused %v", tc.name, err, tc.refused)
		}
	}
}

// What the data path is told: every backend with its MACs, down ones marked so their flows
// move, GUE per VIP, and a redirect only for next hops on another interface.
func TestDataplaneVIPs(t *testing.T) {
	r := resolverFor("198.18.0.11", "198.18.0.12") // .13 does not resolve
	elsewhere := hop("198.18.0.12")
	elsewhere.Ifindex = 7
	r.set(addr("198.18.0.12"), elsewhere)
	d, _ := newTestDaemon(t, r)
	dp := dataplaneVIPs(served(t, d, mustParse(t, testConfig)), 2)
	if len(dp) != 2 {
		t.Fatalf("%d VIPs", len(dp))
	}
	web, dns := dp[0], dp[1]
	if web.Key != (dataplane.VIPKey{Addr: addr("198.18.0.10"), Port: 80, Proto: 6}) || web.GUE || len(web.Ring) != 1009 {
		t.Errorf("web: key %v, gue %v, %d slots", web.Key, web.GUE, len(web.Ring))
	}
	if !dns.GUE || dns.Key.Proto != 17 {
		t.Errorf("dns: key %v, gue %v", dns.Key, dns.GUE)
	}
	want := []dataplane.Backend{
		{Addr: addr("198.18.0.11"), DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 11}, SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
		{Addr: addr("198.18.0.12"), DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 12}, SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Ifindex: 7},
		{Addr: addr("198.18.0.13"), Down: true},
	}
	if len(web.Backends) != len(want) {
		t.Fatalf("web backends %+v", web.Backends)
	}
	for i, w := range want {
		g := web.Backends[i]
		if g.Addr != w.Addr || g.DstMAC.String() != w.DstMAC.String() || g.SrcMAC.String() != w.SrcMAC.String() ||
			g.Ifindex != w.Ifindex || g.Down != w.Down {
			t.Errorf("web backend %d: %+v, want %+v", i, g, w)
		}
	}
}

// Probes through the tunnel are routed by a resolved backend's next hop; VIPs probed
// directly, and VIPs without a resolved backend, get no route.
func TestProbeVias(t *testing.T) {
	d, _ := newTestDaemon(t, resolverFor("198.18.0.11"))
	vias := probeVias(served(t, d, mustParse(t, testConfig)))
	if len(vias) != 1 || vias[addr("198.18.0.53")] != addr("198.18.0.11") {
		t.Errorf("vias %v, want only dns via .11", vias)
	}
	d, _ = newTestDaemon(t, resolverFor("198.18.0.12"))
	if vias := probeVias(served(t, d, mustParse(t, testConfig))); len(vias) != 0 {
		t.Errorf("vias %v with dns's only backend unresolved", vias)
	}
}
