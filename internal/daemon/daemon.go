// Package daemon is `lbd run`'s control loop: config ─► backends and their health ─►
// rings ─► data path, plus the status API and metrics that show it.
//
// The files follow the loop: apply.go writes a config into the data path, rings.go builds
// each VIP's backends and ring, nexthops.go finds and refreshes next hops, health.go turns
// the config into probes and the verdict into backend states, cluster.go joins the other
// LB nodes, bgp.go says what the node may announce to its routers, loop.go runs it all,
// status.go and metrics.go show it.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/announce"
	"github.com/lbdproj/lbd/pkg/backends"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/config"
	"github.com/lbdproj/lbd/pkg/flowsync"
	"github.com/lbdproj/lbd/pkg/health"
	"github.com/prometheus/client_golang/prometheus"
)

// Resolver finds a backend's next hop; backends.Resolver is the netlink one.
type Resolver interface {
	Resolve(ctx context.Context, addr netip.Addr) (backends.NextHop, error)
}

// Options configure a daemon.
type Options struct {
	Logger *slog.Logger
	// Resolver finds next hops; default a netlink resolver in the current namespace.
	Resolver Resolver
	// Registerer receives the health, cluster and verdict metrics; nil keeps them private.
	Registerer prometheus.Registerer
}

// Daemon owns the data path of one LB node and keeps it in line with the config.
type Daemon struct {
	log      *slog.Logger
	resolver Resolver
	reg      prometheus.Registerer
	lb       *dataplane.LB // nil only in tests of what needs no data path
	checker  *health.Checker
	cluster  *cluster.Cluster // nil: this node decides alone
	// announcer announces the VIP addresses over BGP; nil without a bgp section
	announcer *announce.Announcer
	probes    *backends.ProbeRoutes
	dirty     chan struct{}
	flowSync  atomic.Pointer[flowsync.Syncer] // nil: no cluster (flowsync.go)

	verdictTransitions *prometheus.CounterVec

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

	fillMu sync.Mutex // the flow tables' fill, counted now and then (status.go)
	fill   map[string]dataplane.TableFill
	fillAt time.Time
}

// New loads and attaches the data path for cfg (adopting a pinned one) and writes cfg's
// VIPs into it.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	lb, err := dataplane.OpenLB(dataplane.Config{
		Interface:         cfg.Node.Interface,
		PinDir:            cfg.Node.PinDir,
		HashSeed:          cfg.Node.HashSeed,
		EncapSource:       cfg.Node.EncapSource,
		EncapSource6:      cfg.Node.EncapSource6,
		SynFloodThreshold: cfg.Node.SynFloodThreshold,
		FlowTableSize:     cfg.Node.FlowTableSize,
		XDPMode:           cfg.Node.XDPMode,
		EncapPrefix:       cfg.Node.EncapSourcePrefix,
		EncapPrefix6:      cfg.Node.EncapSourcePrefix6,
		Chain:             cfg.Node.XDPChain,
		Logger:            opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	d := newDaemon(opts, lb)
	d.probes = &backends.ProbeRoutes{Mark: dataplane.ProbeMarkBase, Mask: dataplane.ProbeMarkMask, Ifindex: lb.Ifindex()}
	dc := lb.Config()
	verb := "attached"
	if lb.Adopted {
		verb = "adopted pinned link, program swapped in place (flows kept)"
	}
	if lb.ModeNote != "" && lb.Mode != dataplane.XDPChained {
		d.log.Warn("xdp_lb not in the mode asked for", "mode", lb.Mode, "asked", cfg.Node.XDPMode, "why", lb.ModeNote)
	}
	d.log.Info("xdp_lb "+verb, "interface", dc.Interface, "xdp_mode", lb.Mode, "pin_dir", dc.PinDir, "mtu", dc.MTU,
		"encap_source", dc.EncapSource, "hash_seed", fmt.Sprintf("%#x", dc.HashSeed),
		"flow_table_size", dc.FlowTableSize, "syn_flood_threshold", dc.SynFloodThreshold)
	if lb.Resized > 0 {
		d.log.Info("flow tables resized: established flows copied into the new ones", "flows", lb.Resized, "size", dc.FlowTableSize)
	}
	if err := d.Apply(ctx, cfg); err != nil {
		lb.Close()
		return nil, err
	}
	if d.cluster, err = newCluster(cfg, d); err != nil {
		lb.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	fs, err := d.newFlowSync(cfg)
	if err != nil {
		d.leave()
		lb.Close()
		return nil, fmt.Errorf("flow sync: %w", err)
	}
	if fs != nil {
		d.flowSync.Store(fs)
		d.mu.Lock()
		d.flowSyncAppliedLocked(cfg)
		d.mu.Unlock()
	}
	if d.announcer, err = newAnnouncer(cfg, d); err != nil {
		d.leave()
		lb.Close()
		return nil, fmt.Errorf("bgp: %w", err)
	}
	d.kick()
	return d, nil
}

// newDaemon is a Daemon over lb with its checker and metrics, before any config.
func newDaemon(opts Options, lb *dataplane.LB) *Daemon {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Resolver == nil {
		opts.Resolver = &backends.Resolver{}
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	d := &Daemon{log: opts.Logger, resolver: opts.Resolver, reg: reg, lb: lb,
		dirty: make(chan struct{}, 1), down: map[cluster.BackendKey]bool{},
		nexthops: map[netip.Addr]backends.NextHop{}, unresolvedWarned: map[netip.Addr]bool{}}
	d.verdictTransitions = newVerdictTransitions(reg)
	d.checker = health.NewChecker(health.Options{Registerer: reg, Logger: opts.Logger.With("component", "health"),
		OnChange: func(health.Key, health.State) { d.kick() }})
	return d
}

// Close withdraws the BGP routes gracefully (see drainBGP), leaves the cluster and releases
// the data path; the pinned program keeps forwarding until the next lbd.
func (d *Daemon) Close() error {
	d.drainBGP()
	d.leave()
	return d.lb.Close()
}

// Detach withdraws the BGP routes gracefully, leaves the cluster and removes the data path
// and its pins.
func (d *Daemon) Detach() error {
	d.drainBGP()
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
	if err := d.cluster.Shutdown(); err != nil {
		d.log.Warn("cluster shutdown", "err", err)
	}
}

// Config returns the config being served.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}
