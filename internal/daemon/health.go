package daemon

// Health: the probes the config asks for, and what the verdict on them does to the backends.

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/config"
	"github.com/lbdproj/lbd/pkg/health"
)

// targets lists the probes cfg asks for. Backends of VIPs with health type none are not
// probed and count as up. A probe through the tunnel connects to VIP:port with the mark
// (from probeMark, the data path's) that makes tc_probe encapsulate it to its backend; a
// backend without a mark yet is not probed.
func targets(cfg *config.Config, probeMark func(dataplane.VIPKey, netip.Addr) (uint32, bool)) []health.Target {
	var out []health.Target
	for _, v := range cfg.VIPs {
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
				mark, ok := probeMark(dataplane.VIPKey{Addr: v.Address, Port: v.Port, Proto: v.Proto}, b.Address)
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

// localResults is this node's own probe results (true = up) and last errors, by backend.
func localResults(states map[health.Key]health.State) (map[cluster.BackendKey]bool, map[cluster.BackendKey]string) {
	local := map[cluster.BackendKey]bool{}
	errs := map[cluster.BackendKey]string{}
	for k, st := range states {
		bk := cluster.BackendKey{VIP: k.VIP, Backend: k.Backend}
		local[bk] = st.Up
		errs[bk] = st.LastErr
	}
	return local, errs
}

// takeVerdictLocked records this node's probe results and the verdict (the cluster's, or
// the local results for a node alone, as by says), logs and counts every configured
// backend whose verdict changed, and reports whether any did: then the rings must be
// rebuilt.
func (d *Daemon) takeVerdictLocked(ctx context.Context, local map[cluster.BackendKey]bool, errs map[cluster.BackendKey]string,
	verdict map[cluster.BackendKey]bool, by string) bool {
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
			lvl, state := slog.LevelInfo, "up"
			if is {
				lvl, state = slog.LevelWarn, "down"
			}
			d.log.Log(ctx, lvl, "backend "+state, "vip", v.Name, "backend", b.Address, "by", by,
				"local", upDown(local, bk), "last_error", errs[bk])
			d.verdictTransitions.WithLabelValues(v.Name, b.Address.String(), state).Inc()
		}
	}
	if changed {
		d.down = down
	}
	return changed
}

// upDown is a backend's entry in m as status shows it.
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
