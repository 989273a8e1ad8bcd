package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/lbdproj/lbd/pkg/backends"
	"github.com/lbdproj/lbd/pkg/config"
	"github.com/prometheus/client_golang/prometheus"
)

// testConfig has two VIPs sharing a backend: web (three backends, one drained) and dns
// (probed through the tunnel, GUE).
const testConfig = `node: {interface: eth0, name: lb1}
vips:
  - name: web
    address: 198.18.0.10
    port: 80
    ring_size: 1009
    backends:
      - address: 198.18.0.11
      - address: 198.18.0.12
        weight: 0
      - address: 198.18.0.13
        weight: 2
  - name: dns
    address: 198.18.0.53
    port: 53
    protocol: udp
    ring_size: 211
    encap: gue
    health: {type: udp, payload: ping, through_tunnel: true}
    backends:
      - address: 198.18.0.11
`

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// fakeResolver answers from a table; an address not in it does not resolve.
type fakeResolver struct {
	mu    sync.Mutex
	hops  map[netip.Addr]backends.NextHop
	calls map[netip.Addr]int
}

var errNoNeighbour = errors.New("no neighbour")

func (r *fakeResolver) Resolve(_ context.Context, a netip.Addr) (backends.NextHop, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[netip.Addr]int{}
	}
	r.calls[a]++
	nh, ok := r.hops[a]
	if !ok {
		return backends.NextHop{}, errNoNeighbour
	}
	return nh, nil
}

func (r *fakeResolver) set(a netip.Addr, nh backends.NextHop) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hops[a] = nh
}

func (r *fakeResolver) callsFor(a netip.Addr) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[a]
}

// hop is a next hop on ifindex 2 whose MAC ends in the address's last byte.
func hop(a string) backends.NextHop {
	ip := netip.MustParseAddr(a)
	last := ip.AsSlice()[ip.BitLen()/8-1]
	return backends.NextHop{Ifindex: 2, Via: ip,
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, last}}
}

// resolverFor resolves every address given.
func resolverFor(addrs ...string) *fakeResolver {
	r := &fakeResolver{hops: map[netip.Addr]backends.NextHop{}}
	for _, a := range addrs {
		r.hops[netip.MustParseAddr(a)] = hop(a)
	}
	return r
}

// newTestDaemon is a Daemon without a data path, on its own pedantic registry: enough for
// everything but writing to BPF maps.
func newTestDaemon(t *testing.T, r Resolver) (*Daemon, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	return newDaemon(Options{Logger: slog.New(slog.DiscardHandler), Resolver: r, Registerer: reg}, nil), reg
}

// served builds cfg on d and records it as served, as applyLocked does after writing it.
func served(t *testing.T, d *Daemon, cfg *config.Config) []vipView {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	views, err := d.build(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.cfg, d.vips = cfg, views
	return views
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }
