package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/config"
	"github.com/lbdproj/lbd/pkg/health"
)

// backendKey names a backend of a VIP in the cluster's gossip: "vip/address".
func backendKey(vip string, addr netip.Addr) cluster.BackendKey {
	return cluster.BackendKey(vip + "/" + addr.String())
}

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
	q, err := cluster.ParseQuorum(cc.Quorum)
	if err != nil {
		return nil, err
	}
	host, portStr, err := net.SplitHostPort(cc.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster.bind %q: %w", cc.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("cluster.bind %q: port: %w", cc.Bind, err)
	}
	opts := cluster.Options{NodeName: cfg.Node.Name, BindAddr: host, BindPort: port, Join: cc.Join,
		Quorum: q, ConfigDigest: cfg.Digest(), Registerer: d.reg, Logger: d.log.With("component", "cluster"),
		OnChange: d.kick}
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
		bk := backendKey(k.VIP, k.Backend)
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
	down := map[string]map[netip.Addr]bool{}
	for bk, up := range verdict {
		if up {
			continue
		}
		vip, addr, ok := splitKey(bk)
		if !ok {
			continue
		}
		if down[vip] == nil {
			down[vip] = map[netip.Addr]bool{}
		}
		down[vip][addr] = true
	}
	changed := false
	for _, v := range d.cfg.VIPs {
		for _, b := range v.Backends {
			was, is := d.down[v.Name][b.Address], down[v.Name][b.Address]
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
				"local", upDown(local, backendKey(v.Name, b.Address)), "last_error", errs[backendKey(v.Name, b.Address)])
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

func splitKey(k cluster.BackendKey) (string, netip.Addr, bool) {
	s := string(k)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			a, err := netip.ParseAddr(s[i+1:])
			return s[:i], a, err == nil
		}
	}
	return "", netip.Addr{}, false
}

// fingerprintLocked names all rings at once, for the cluster to compare.
func (d *Daemon) fingerprintLocked() string {
	fps := map[string]string{}
	for _, v := range d.vips {
		fps[v.cfg.Name] = v.fingerprint
	}
	return digestOf(fps)
}
