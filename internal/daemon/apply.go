package daemon

// Writing a config into the data path: the reload decision, the write itself, and the routes
// probes through the tunnel take.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/backends"
	"github.com/lbdproj/lbd/pkg/config"
)

// ErrRestartNeeded is returned by Apply for changes the running data path cannot take.
var ErrRestartNeeded = errors.New("restart lbd to apply")

// Apply writes cfg's VIPs into the data path. A config that changes what was fixed at
// load time (interface, pin directory, hash seed, encap sources, the BGP sessions) is
// refused whole, and the running one keeps serving.
func (d *Daemon) Apply(ctx context.Context, cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg != nil {
		if err := checkReload(d.cfg.Node, cfg.Node); err != nil {
			return err
		}
		if err := checkBGPReload(d.cfg.BGP, cfg.BGP); err != nil {
			return err
		}
	}
	if err := d.applyLocked(ctx, cfg); err != nil {
		return err
	}
	d.checker.Set(targets(cfg, d.lb.ProbeMark))
	if d.announcer != nil {
		if err := d.announcer.SetPeers(bgpPeers(cfg.BGP)); err != nil {
			d.log.Error("bgp peers", "err", err)
		}
	}
	if d.cluster != nil {
		if err := d.cluster.SetConfigDigest(cfg.Digest(), time.Second); err != nil {
			d.log.Warn("cluster: new config digest not yet sent", "err", err)
		}
	}
	d.kick()
	return nil
}

// checkReload refuses a reload that changes what the data path fixed when it was loaded.
// Everything else in the node section (api_addr, name) is read at start only, and changing
// it takes effect at the next start.
func checkReload(old, new config.Node) error {
	if old.Interface != new.Interface || old.PinDir != new.PinDir || old.HashSeed != new.HashSeed ||
		old.EncapSource != new.EncapSource || old.EncapSource6 != new.EncapSource6 ||
		old.SynFloodThreshold != new.SynFloodThreshold || old.FlowTableSize != new.FlowTableSize ||
		old.XDPMode != new.XDPMode || old.EncapSourcePrefix != new.EncapSourcePrefix ||
		old.EncapSourcePrefix6 != new.EncapSourcePrefix6 || !reflect.DeepEqual(old.XDPChain, new.XDPChain) {
		return fmt.Errorf("node section changed (interface, pin_dir, hash_seed, encap source, syn_flood_threshold, flow_table_size, xdp_mode or xdp_chain): %w", ErrRestartNeeded)
	}
	return nil
}

// applyLocked builds cfg's rings and writes them, with the backends and their next hops,
// into the data path.
func (d *Daemon) applyLocked(ctx context.Context, cfg *config.Config) error {
	views, err := d.build(ctx, cfg)
	if err != nil {
		return err
	}
	if err := d.lb.Apply(dataplaneVIPs(views, d.lb.Ifindex())); err != nil {
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
	d.flowSyncAppliedLocked(cfg)
	return nil
}

// dataplaneVIPs is what the data path is told of views. A backend whose next hop leaves by
// another interface than ifindex (xdp_lb's) is redirected there; the others go out with XDP_TX.
func dataplaneVIPs(views []vipView, ifindex int) []dataplane.VIP {
	dp := make([]dataplane.VIP, len(views))
	for i, v := range views {
		dp[i] = dataplane.VIP{Key: v.key, Ring: v.ring, Backends: make([]dataplane.Backend, len(v.backends)),
			GUE: v.cfg.Encap == config.EncapGUE, QUIC: v.cfg.QUIC}
		sids := map[netip.Addr]uint16{}
		for _, b := range v.cfg.Backends {
			sids[b.Address] = b.QUICServerID
		}
		for j, b := range v.backends {
			nh := v.nexthops[j]
			dp[i].Backends[j] = dataplane.Backend{Addr: b.Addr, DstMAC: nh.DstMAC, SrcMAC: nh.SrcMAC,
				Down: backends.StateOf(b) == backends.Down, QUICServerID: sids[b.Addr]}
			if nh.Ifindex != 0 && nh.Ifindex != ifindex {
				dp[i].Backends[j].Ifindex = nh.Ifindex
			}
		}
	}
	return dp
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
