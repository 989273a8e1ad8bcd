package daemon

// The status API: what `lbd status` shows, and the HTTP handler that serves it with /metrics.

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/announce"
	"github.com/lbdproj/lbd/pkg/backends"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/flowsync"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is what `lbd status` shows: the VIPs being served, their backends and counters.
type Status struct {
	Node         string                       `json:"node"`
	Interface    string                       `json:"interface"`
	PinDir       string                       `json:"pin_dir"`
	ConfigDigest string                       `json:"config_digest"`
	VIPs         []VIPStatus                  `json:"vips"`
	Verdicts     map[string]dataplane.Counter `json:"verdicts"`
	Events       map[string]uint64            `json:"events"`
	// XDPMode is the mode xdp_lb runs in, and XDPModeNote why it is not the one asked for
	XDPMode     string `json:"xdp_mode"`
	XDPModeNote string `json:"xdp_mode_note,omitempty"`
	// FlowTables is how full the flow tables are, by family ("ipv4", "ipv6")
	FlowTables map[string]dataplane.TableFill `json:"flow_tables"`
	// Cluster is nil when the node decides alone.
	Cluster *ClusterStatus `json:"cluster,omitempty"`
	// FlowSync is nil when the node decides alone (flow sync needs a cluster).
	FlowSync *flowsync.Status `json:"flow_sync,omitempty"`
	// BGP is nil without a bgp section.
	BGP *announce.Status `json:"bgp,omitempty"`
}

// ClusterStatus is the node's view of the LB cluster.
type ClusterStatus struct {
	Quorum            string         `json:"quorum"`
	Members           []MemberStatus `json:"members"`
	FingerprintsAgree bool           `json:"fingerprints_agree"`
	Fingerprint       string         `json:"fingerprint"`
}

// MemberStatus is one LB node as gossip shows it.
type MemberStatus struct {
	Name        string `json:"name"`
	Addr        string `json:"addr"`
	State       string `json:"state"`
	SameConfig  bool   `json:"same_config"`
	Voter       bool   `json:"voter"`
	Fingerprint string `json:"fingerprint"`
	Self        bool   `json:"self,omitempty"`
}

// VIPStatus is one VIP.
type VIPStatus struct {
	Name        string          `json:"name"`
	Address     string          `json:"address"`
	Port        uint16          `json:"port"`
	Protocol    string          `json:"protocol"`
	RingSize    int             `json:"ring_size"`
	Fingerprint string          `json:"ring_fingerprint"`
	Packets     uint64          `json:"packets"`
	Bytes       uint64          `json:"bytes"`
	Backends    []BackendStatus `json:"backends"`
}

// BackendStatus is one backend of a VIP.
type BackendStatus struct {
	Address string `json:"address"`
	Weight  uint32 `json:"weight"`
	State   string `json:"state"` // active, draining, down
	Probe   string `json:"probe"` // this node's own probes: up, down, not probed
	// Views: each LB node's probe result, when in a cluster
	Views   map[string]bool `json:"views,omitempty"`
	Slots   int             `json:"slots"`
	NextHop string          `json:"next_hop,omitempty"`
	Error   string          `json:"error,omitempty"`
	Packets uint64          `json:"packets"`
	Bytes   uint64          `json:"bytes"`
}

// Status reads the served state and the counters.
func (d *Daemon) Status() (Status, error) {
	stats, err := d.lb.Stats()
	if err != nil {
		return Status{}, err
	}
	var cs *cluster.Status
	if d.cluster != nil {
		st := d.cluster.Status()
		cs = &st
	}
	var fs *flowsync.Status
	if s := d.flowSync.Load(); s != nil {
		st := s.Status()
		fs = &st
	}
	var bs *announce.Status
	if d.announcer != nil {
		st := d.announcer.Status()
		bs = &st
	}
	fill := d.flowTables()
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.statusLocked(stats, cs)
	st.BGP = bs
	st.FlowTables = fill
	st.XDPMode, st.XDPModeNote = string(d.lb.Mode), d.lb.ModeNote
	st.FlowSync = fs
	return st, nil
}

// flowTableTTL is how long a count of the flow tables is reused: counting reads every key.
const flowTableTTL = 10 * time.Second

// flowTables is how full the flow tables are, counted at most every flowTableTTL.
func (d *Daemon) flowTables() map[string]dataplane.TableFill {
	d.fillMu.Lock()
	defer d.fillMu.Unlock()
	if d.fill != nil && time.Since(d.fillAt) < flowTableTTL {
		return d.fill
	}
	v4, v6, err := d.lb.FlowTables()
	if err != nil {
		d.log.Warn("count flow tables", "err", err)
		return d.fill
	}
	d.fill, d.fillAt = map[string]dataplane.TableFill{"ipv4": v4, "ipv6": v6}, time.Now()
	return d.fill
}

// statusLocked is the status of what is served, with the data path's counters stats and
// the cluster's status cs (nil for a node alone).
func (d *Daemon) statusLocked(stats dataplane.Stats, cs *cluster.Status) Status {
	views := map[cluster.BackendKey]map[string]bool{}
	var cst *ClusterStatus
	if cs != nil {
		cst = &ClusterStatus{Quorum: string(cs.Quorum), FingerprintsAgree: cs.FingerprintsAgree, Fingerprint: d.fingerprintLocked()}
		for _, m := range cs.Members {
			cst.Members = append(cst.Members, MemberStatus{Name: m.Name, Addr: m.Addr, State: m.State,
				SameConfig: m.SameConfig, Voter: m.Voter, Fingerprint: m.Fingerprint, Self: m.Self})
		}
		for _, b := range cs.Backends {
			views[b.Key] = b.Views
		}
	}
	st := Status{Node: d.cfg.Node.Name, Interface: d.cfg.Node.Interface, PinDir: d.cfg.Node.PinDir,
		ConfigDigest: d.cfg.Digest(), Verdicts: stats.Verdicts, Events: stats.Events, Cluster: cst}
	for _, v := range d.vips {
		shares := backends.Shares(v.backends, v.ring)
		vs := VIPStatus{Name: v.cfg.Name, Address: v.cfg.Address.String(), Port: v.cfg.Port, Protocol: v.cfg.Protocol,
			RingSize: len(v.ring), Fingerprint: v.fingerprint,
			Packets: stats.VIPs[v.key].Packets, Bytes: stats.VIPs[v.key].Bytes}
		for i, b := range v.backends {
			c := stats.Backends[v.key][b.Addr]
			bs := BackendStatus{Address: b.Addr.String(), Weight: b.Weight, State: backends.StateOf(b).String(),
				Slots: shares[b.Addr], Error: v.unreachable[b.Addr], Packets: c.Packets, Bytes: c.Bytes}
			bk := cluster.BackendKey{VIP: v.cfg.Name, Backend: b.Addr}
			bs.Probe = upDown(d.local, bk)
			if bs.Error == "" {
				bs.Error = d.probeErr[bk]
			}
			if views, ok := views[bk]; ok {
				bs.Views = views
			}
			if mac := v.nexthops[i].DstMAC; mac != nil {
				bs.NextHop = mac.String()
			}
			vs.Backends = append(vs.Backends, bs)
		}
		st.VIPs = append(st.VIPs, vs)
	}
	return st
}

// Handler serves the read-only API: /status (JSON), /explain?proto=tcp&src=ADDR:PORT&dst=ADDR:PORT
// (JSON), /metrics (from g), /healthz.
func (d *Daemon) Handler(g prometheus.Gatherer) http.Handler { return handler(d.Status, d.Explain, g) }

func handler(status func() (Status, error), explain func(dataplane.Flow) (Explanation, error), g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st, err := status()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("GET /explain", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f, err := ParseFlow(q.Get("proto"), q.Get("src"), q.Get("dst"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ex, err := explain(f)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, ex)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
