package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/config"
	"github.com/lbdproj/lbd/pkg/health"
)

// targetsLocked lists the probes the config asks for. Backends of VIPs with health type
// none are not probed and count as up. A probe through the tunnel connects to VIP:port with
// the mark that makes tc_probe encapsulate it to its backend.
func (d *Daemon) targetsLocked() []health.Target {
	var out []health.Target
	for _, v := range d.cfg.VIPs {
		h := v.Health
		if h.Type == "" || h.Type == health.TypeNone {
			continue
		}
		spec := health.Spec{Type: h.Type, Path: h.Path, Host: h.Host, Method: h.Method,
			ExpectStatus: h.ExpectStatus, ExpectBody: h.ExpectBody,
			Payload: []byte(h.Payload), ExpectReply: []byte(h.ExpectReply),
			Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall}
		for _, b := range v.Backends {
			t := health.Target{
				Key:  health.Key{VIP: v.Name, Backend: b.Address, Port: h.Port},
				Addr: netip.AddrPortFrom(b.Address, h.Port),
				Spec: spec,
			}
			if h.ThroughTunnel {
				mark, ok := d.lb.ProbeMark(dataplane.VIPKey{Addr: v.Address, Port: v.Port, Proto: v.Proto}, b.Address)
				if !ok {
					continue
				}
				t.Addr, t.Mark = netip.AddrPortFrom(v.Address, h.Port), mark
			}
			out = append(out, t)
		}
	}
	return out
}

// newCluster starts gossip for cfg.Cluster; nil when the node decides alone.
func newCluster(cfg *config.Config, d *Daemon) (*cluster.Cluster, error) {
	cc := cfg.Cluster
	if cc == nil {
		return nil, nil
	}
	opts := cluster.Options{NodeName: cfg.Node.Name, Bind: cc.Bind, Join: cc.Join,
		Quorum: cc.Quorum, ConfigDigest: cfg.Digest(), Registerer: d.reg, Logger: d.log.With("component", "cluster"),
		OnChange: d.kick}
	var err error
	if cc.SecretFile == "" {
		opts.Insecure = true
		d.log.Warn("cluster gossip is neither encrypted nor authenticated: set cluster.secret_file")
	} else if opts.SecretKey, err = cluster.LoadSecret(cc.SecretFile); err != nil {
		return nil, err
	}
	return cluster.New(opts)
}

// kick asks the reconcile loop to look at health again; it never blocks.
func (d *Daemon) kick() {
	select {
	case d.dirty <- struct{}{}:
	default:
	}
}

// Run probes the backends, takes part in the cluster and keeps the rings in line with the
// verdict until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	go d.checker.Run(ctx)
	d.kick()
	tick := time.NewTicker(resolveRetry)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := d.refreshNextHops(ctx); err != nil {
				d.log.Error("refresh next hops", "err", err)
			}
		case <-d.dirty:
			if err := d.reconcile(ctx); err != nil {
				d.log.Error("apply health verdict", "err", err)
			}
		}
	}
}

// reconcile publishes the local probe results, takes the verdict (the cluster's, or the
// local one for a node alone) and rebuilds the rings when a backend changed state.
func (d *Daemon) reconcile(ctx context.Context) error {
	local := map[cluster.BackendKey]bool{}
	errs := map[cluster.BackendKey]string{}
	for k, st := range d.checker.States() {
		bk := cluster.BackendKey{VIP: k.VIP, Backend: k.Backend}
		local[bk] = st.Up
		errs[bk] = st.LastErr
	}
	verdict := local
	if d.cluster != nil {
		d.cluster.SetLocal(local)
		verdict = d.cluster.Verdict()
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	d.local, d.probeErr = local, errs
	down := map[cluster.BackendKey]bool{}
	for bk, up := range verdict {
		if !up {
			down[bk] = true
		}
	}
	changed := false
	for _, v := range d.cfg.VIPs {
		for _, b := range v.Backends {
			bk := cluster.BackendKey{VIP: v.Name, Backend: b.Address}
			was, is := d.down[bk], down[bk]
			if was == is {
				continue
			}
			changed = true
			src := "local probes"
			if d.cluster != nil {
				src = "cluster verdict"
			}
			lvl, state := slog.LevelInfo, "up"
			if is {
				lvl, state = slog.LevelWarn, "down"
			}
			d.log.Log(ctx, lvl, "backend "+state, "vip", v.Name, "backend", b.Address, "by", src,
				"local", upDown(local, bk), "last_error", errs[bk])
			d.transitions.WithLabelValues(v.Name, b.Address.String(), state).Inc()
		}
	}
	if changed {
		d.down = down
		if err := d.applyLocked(ctx, d.cfg); err != nil {
			return err
		}
	}
	if d.cluster != nil {
		d.cluster.SetFingerprint(d.fingerprintLocked())
	}
	return nil
}

func upDown(m map[cluster.BackendKey]bool, k cluster.BackendKey) string {
	up, ok := m[k]
	switch {
	case !ok:
		return "not probed"
	case up:
		return "up"
	default:
		return "down"
	}
}

// fingerprintLocked names all rings at once, for the cluster to compare.
func (d *Daemon) fingerprintLocked() string {
	fps := map[string]string{}
	for _, v := range d.vips {
		fps[v.cfg.Name] = v.fingerprint
	}
	return digestOf(fps)
}
