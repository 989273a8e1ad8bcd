// Package daemon is `lbd run`'s control loop: config ─► backends and their health ─►
// rings ─► data path, plus the status API and metrics that show it.
package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/backends"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/config"
	"github.com/lbdproj/lbd/pkg/health"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a daemon.
type Options struct {
	Logger *slog.Logger
	// Resolver finds next hops; default a netlink resolver in the current namespace.
	Resolver interface {
		Resolve(ctx context.Context, addr netip.Addr) (backends.NextHop, error)
	}
	// Registerer receives the health, cluster and transition metrics; nil keeps them private.
	Registerer prometheus.Registerer
}

// Daemon owns the data path of one LB node and keeps it in line with the config.
type Daemon struct {
	log     *slog.Logger
	res     Options
	reg     prometheus.Registerer
	lb      *dataplane.LB
	checker *health.Checker
	cluster *cluster.Cluster // nil: this node decides alone
	probes  *backends.ProbeRoutes
	dirty   chan struct{}

	transitions *prometheus.CounterVec

	mu   sync.Mutex
	cfg  *config.Config
	vips []vipView
	// the verdict: backends that are down; missing means up
	down map[cluster.BackendKey]bool
	// this node's own probe results and last probe errors
	local    map[cluster.BackendKey]bool
	probeErr map[cluster.BackendKey]string
	// next hops that resolved, reused until the periodic refresh; unresolved ones are
	// retried on every apply and every resolveRetry
	nexthops         map[netip.Addr]backends.NextHop
	resolvedAt       time.Time
	unresolvedWarned map[netip.Addr]bool
}

const (
	resolveRetry   = 5 * time.Second // retry unresolved next hops this often
	resolveRefresh = time.Minute     // re-resolve every next hop this often (a MAC may change)
	retryTimeout   = 300 * time.Millisecond
)

// vipView is what was last written for a VIP, kept for status and metrics.
type vipView struct {
	cfg         config.VIP
	key         dataplane.VIPKey
	backends    []backends.Backend
	nexthops    []backends.NextHop
	unreachable map[netip.Addr]string
	ring        []uint32
	fingerprint string
}

// New loads and attaches the data path for cfg (adopting a pinned one) and writes cfg's
// VIPs into it.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Resolver == nil {
		opts.Resolver = &backends.Resolver{}
	}
	lb, err := dataplane.OpenLB(dataplane.Config{
		Interface:    cfg.Node.Interface,
		PinDir:       cfg.Node.PinDir,
		HashSeed:     cfg.Node.HashSeed,
		EncapSource:  cfg.Node.EncapSource,
		EncapSource6: cfg.Node.EncapSource6,
		Logger:       opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	d := &Daemon{log: opts.Logger, res: opts, reg: reg, lb: lb, down: map[cluster.BackendKey]bool{},
		dirty: make(chan struct{}, 1), nexthops: map[netip.Addr]backends.NextHop{},
		unresolvedWarned: map[netip.Addr]bool{}}
	d.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lbd_backend_transitions_total",
		Help: "Backends going up or down in this node's rings (the cluster verdict, or local probes alone)."},
		[]string{"vip", "backend", "to"})
	reg.MustRegister(d.transitions)
	d.probes = &backends.ProbeRoutes{Mark: dataplane.ProbeMarkBase, Mask: dataplane.ProbeMarkMask, Ifindex: lb.Ifindex()}
	d.checker = health.NewChecker(health.Options{Registerer: reg, Logger: opts.Logger.With("component", "health"),
		OnChange: func(health.Key, health.State) { d.kick() }})
	dc := lb.Config()
	verb := "attached"
	if lb.Adopted {
		verb = "adopted pinned link, program swapped in place (flows kept)"
	}
	d.log.Info("xdp_lb "+verb, "interface", dc.Interface, "pin_dir", dc.PinDir, "mtu", dc.MTU,
		"encap_source", dc.EncapSource, "hash_seed", fmt.Sprintf("%#x", dc.HashSeed))
	if err := d.Apply(ctx, cfg); err != nil {
		lb.Close()
		return nil, err
	}
	if d.cluster, err = newCluster(cfg, d); err != nil {
		lb.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	return d, nil
}

// ErrRestartNeeded is returned by Apply for changes the running data path cannot take.
var ErrRestartNeeded = errors.New("restart lbd to apply")

// Apply writes cfg's VIPs into the data path. A config that changes what was fixed at
// load time (interface, pin directory, hash seed, encap sources) is refused whole, and the
// running one keeps serving.
func (d *Daemon) Apply(ctx context.Context, cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old := d.cfg; old != nil {
		o, n := old.Node, cfg.Node
		if o.Interface != n.Interface || o.PinDir != n.PinDir || o.HashSeed != n.HashSeed ||
			o.EncapSource != n.EncapSource || o.EncapSource6 != n.EncapSource6 {
			return fmt.Errorf("node section changed (interface, pin_dir, hash_seed or encap source): %w", ErrRestartNeeded)
		}
	}
	if err := d.applyLocked(ctx, cfg); err != nil {
		return err
	}
	d.checker.Set(d.targetsLocked())
	if d.cluster != nil {
		if err := d.cluster.SetConfigDigest(cfg.Digest(), time.Second); err != nil {
			d.log.Warn("cluster: new config digest not yet sent", "err", err)
		}
	}
	d.kick()
	return nil
}

func (d *Daemon) applyLocked(ctx context.Context, cfg *config.Config) error {
	views, err := d.build(ctx, cfg)
	if err != nil {
		return err
	}
	dp := make([]dataplane.VIP, len(views))
	for i, v := range views {
		dp[i] = dataplane.VIP{Key: v.key, Ring: v.ring, Backends: make([]dataplane.Backend, len(v.backends)),
			GUE: v.cfg.Encap == config.EncapGUE}
		for j, b := range v.backends {
			nh := v.nexthops[j]
			dp[i].Backends[j] = dataplane.Backend{Addr: b.Addr, DstMAC: nh.DstMAC, SrcMAC: nh.SrcMAC,
				Down: backends.StateOf(b) == backends.Down}
			if nh.Ifindex != 0 && nh.Ifindex != d.lb.Ifindex() {
				dp[i].Backends[j].Ifindex = nh.Ifindex
			}
		}
	}
	if err := d.lb.Apply(dp); err != nil {
		return fmt.Errorf("write data path: %w", err)
	}
	before := map[string]string{}
	for _, v := range d.vips {
		before[v.cfg.Name] = v.fingerprint
	}
	for _, v := range views {
		if before[v.cfg.Name] != v.fingerprint {
			d.log.Info("vip serving", "vip", v.cfg.Name, "key", v.key, "backends", len(v.backends),
				"ring_size", len(v.ring), "ring", v.fingerprint)
		}
	}
	d.cfg, d.vips = cfg, views
	if err := d.probes.Sync(probeVias(views)); err != nil {
		d.log.Warn("routes for probes through the tunnel", "err", err)
	}
	return nil
}

// probeVias picks, per VIP probed through the tunnel, a next hop to route its probes by:
// any resolved backend's (tc_probe rewrites the Ethernet header anyway).
func probeVias(views []vipView) map[netip.Addr]netip.Addr {
	out := map[netip.Addr]netip.Addr{}
	for _, v := range views {
		if !v.cfg.Health.ThroughTunnel {
			continue
		}
		for _, nh := range v.nexthops {
			if nh.DstMAC != nil {
				out[v.cfg.Address] = nh.Via
				break
			}
		}
	}
	return out
}

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
			nh, ok := resolved[bc.Address]
			err := failed[bc.Address]
			if !ok && err == nil {
				if nh, ok = d.nexthops[bc.Address]; !ok {
					rctx, cancel := ctx, context.CancelFunc(func() {})
					if !d.resolvedAt.IsZero() { // a retry in the background: keep it short
						rctx, cancel = context.WithTimeout(ctx, retryTimeout)
					}
					nh, err = d.res.Resolver.Resolve(rctx, bc.Address)
					cancel()
				}
				if err != nil {
					failed[bc.Address] = err
					if _, warned := d.unresolvedWarned[bc.Address]; !warned {
						d.log.Warn("backend next hop unresolved: treated as down", "backend", bc.Address, "err", err)
						d.unresolvedWarned[bc.Address] = true
					}
				} else {
					resolved[bc.Address] = nh
					if d.unresolvedWarned[bc.Address] {
						d.log.Info("backend next hop resolved", "backend", bc.Address, "mac", nh.DstMAC)
						delete(d.unresolvedWarned, bc.Address)
					}
				}
			}
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

// Close leaves the cluster and releases the data path; the pinned program keeps
// forwarding until the next lbd.
func (d *Daemon) Close() error {
	d.leave()
	return d.lb.Close()
}

// Detach leaves the cluster and removes the data path and its pins.
func (d *Daemon) Detach() error {
	d.leave()
	return d.lb.Detach()
}

func (d *Daemon) leave() {
	if err := d.probes.Close(); err != nil {
		d.log.Warn("remove probe routes", "err", err)
	}
	if d.cluster == nil {
		return
	}
	if err := d.cluster.Leave(2 * time.Second); err != nil {
		d.log.Warn("cluster leave", "err", err)
	}
	d.cluster.Shutdown()
}

// Stats returns the data path's counters.
func (d *Daemon) Stats() (dataplane.Stats, error) { return d.lb.Stats() }

// Config returns the config being served.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}
