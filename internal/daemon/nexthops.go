package daemon

// Next hops: resolved when a config is applied, retried while unresolved, refreshed now and
// then in case a MAC changes.

import (
	"context"
	"net/netip"
	"time"

	"github.com/lbdproj/lbd/pkg/backends"
)

const (
	resolveRetry   = 5 * time.Second // retry unresolved next hops this often
	resolveRefresh = time.Minute     // re-resolve every next hop this often (a MAC may change)
	retryTimeout   = 300 * time.Millisecond
)

// nextHop returns addr's next hop for one build: from this build's results (resolved,
// failed), else from the ones kept since the last refresh, else asking the resolver. The
// first resolution waits as long as ctx allows; retries in the background are kept short.
// A backend that stops or starts resolving is logged once.
func (d *Daemon) nextHop(ctx context.Context, addr netip.Addr, resolved map[netip.Addr]backends.NextHop, failed map[netip.Addr]error) (backends.NextHop, error) {
	if nh, ok := resolved[addr]; ok {
		return nh, nil
	}
	if err := failed[addr]; err != nil {
		return backends.NextHop{}, err
	}
	nh, ok := d.nexthops[addr]
	var err error
	if !ok {
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if !d.resolvedAt.IsZero() {
			rctx, cancel = context.WithTimeout(ctx, retryTimeout)
		}
		nh, err = d.resolver.Resolve(rctx, addr)
		cancel()
	}
	if err != nil {
		failed[addr] = err
		if !d.unresolvedWarned[addr] {
			d.log.Warn("backend next hop unresolved: treated as down", "backend", addr, "err", err)
			d.unresolvedWarned[addr] = true
		}
		return backends.NextHop{}, err
	}
	resolved[addr] = nh
	if d.unresolvedWarned[addr] {
		d.log.Info("backend next hop resolved", "backend", addr, "mac", nh.DstMAC.String())
		delete(d.unresolvedWarned, addr)
	}
	return nh, nil
}

// unresolvedLocked reports whether a backend's next hop did not resolve.
func (d *Daemon) unresolvedLocked() bool {
	for _, v := range d.vips {
		if len(v.unreachable) > 0 {
			return true
		}
	}
	return false
}

// refreshNextHops retries unresolved next hops and, every resolveRefresh, re-resolves them
// all; the data path is rewritten only when that changes something.
func (d *Daemon) refreshNextHops(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg == nil {
		return nil
	}
	full := time.Since(d.resolvedAt) >= resolveRefresh
	if !full && !d.unresolvedLocked() {
		return nil
	}
	old := d.nexthops
	if full {
		d.nexthops = map[netip.Addr]backends.NextHop{}
		d.resolvedAt = time.Now()
	}
	views, err := d.build(ctx, d.cfg)
	if err != nil {
		d.nexthops = old
		return err
	}
	if sameNextHops(d.vips, views) {
		return nil
	}
	return d.applyLocked(ctx, d.cfg)
}

// sameNextHops reports whether two builds of one config send every backend the same way.
func sameNextHops(a, b []vipView) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i].nexthops) != len(b[i].nexthops) || len(a[i].unreachable) != len(b[i].unreachable) {
			return false
		}
		for j := range a[i].nexthops {
			x, y := a[i].nexthops[j], b[i].nexthops[j]
			if x.Ifindex != y.Ifindex || x.DstMAC.String() != y.DstMAC.String() || x.SrcMAC.String() != y.SrcMAC.String() {
				return false
			}
		}
	}
	return true
}
