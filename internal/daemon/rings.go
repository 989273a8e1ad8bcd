package daemon

// Each VIP's backends as the data path serves them, and its ring over them.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/backends"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/config"
)

// vipView is what was last written for a VIP, kept for status and metrics.
type vipView struct {
	cfg         config.VIP
	key         dataplane.VIPKey
	backends    []backends.Backend
	nexthops    []backends.NextHop // by backend, as backends; zero when unresolved
	unreachable map[netip.Addr]string
	ring        []uint32
	fingerprint string
}

// build computes every VIP's backends and ring: a backend is healthy unless the verdict has
// it down or its next hop does not resolve. It resolves next hops it does not have yet (see
// nextHop) and changes nothing else.
func (d *Daemon) build(ctx context.Context, cfg *config.Config) ([]vipView, error) {
	views := make([]vipView, 0, len(cfg.VIPs))
	resolved := map[netip.Addr]backends.NextHop{}
	failed := map[netip.Addr]error{}
	for _, vc := range cfg.VIPs {
		if vc.Health.ThroughTunnel && !vc.Address.Is4() {
			return nil, fmt.Errorf("%s: vip %s: health.through_tunnel: only IPv4 VIPs can be probed through the tunnel yet", vc.Pos, vc.Name)
		}
		v := vipView{cfg: vc, key: dataplane.VIPKey{Addr: vc.Address, Port: vc.Port, Proto: vc.Proto},
			unreachable: map[netip.Addr]string{}}
		for _, bc := range vc.Backends {
			nh, err := d.nextHop(ctx, bc.Address, resolved, failed)
			b := backends.Backend{Addr: bc.Address, Weight: bc.Weight,
				Healthy: err == nil && !d.down[cluster.BackendKey{VIP: vc.Name, Backend: bc.Address}]}
			if err != nil {
				v.unreachable[bc.Address] = err.Error()
			}
			v.backends = append(v.backends, b)
			v.nexthops = append(v.nexthops, nh)
		}
		ring, err := backends.Ring(vc.Algorithm.OrDefault(), v.backends, vc.RingSize)
		if err != nil {
			return nil, fmt.Errorf("%s: vip %s: ring: %w", vc.Pos, vc.Name, err)
		}
		v.ring = ring
		v.fingerprint = fingerprint(v.backends, ring)
		views = append(views, v)
	}
	d.nexthops = resolved
	if d.resolvedAt.IsZero() {
		d.resolvedAt = time.Now()
	}
	return views, nil
}

// fingerprint names a ring by its content (slot → backend address), so LB nodes can tell
// whether they serve the same one.
func fingerprint(bs []backends.Backend, ring []uint32) string {
	h := sha256.New()
	for _, i := range ring {
		h.Write(bs[i].Addr.AsSlice())
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// digestOf names a set of named fingerprints, in name order.
func digestOf(fps map[string]string) string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(fps)) {
		fmt.Fprintf(h, "%s=%s;", name, fps[name])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// fingerprintLocked names all rings at once, for the cluster to compare.
func (d *Daemon) fingerprintLocked() string {
	fps := map[string]string{}
	for _, v := range d.vips {
		fps[v.cfg.Name] = v.fingerprint
	}
	return digestOf(fps)
}
