package daemon

import (
	"encoding/json"
	"net/http"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/backends"
	"github.com/lbdproj/lbd/pkg/cluster"
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
	// Cluster is nil when the node decides alone.
	Cluster *ClusterStatus `json:"cluster,omitempty"`
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
	d.mu.Lock()
	defer d.mu.Unlock()
	views := map[cluster.BackendKey]map[string]bool{}
	var cst *ClusterStatus
	if d.cluster != nil {
		cs := d.cluster.Status()
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
	return st, nil
}

// Handler serves the read-only API: /status (JSON), /metrics, /healthz.
func (d *Daemon) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st, err := d.Status()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	return mux
}

// Collector exposes the data path's counters to Prometheus, read at scrape time.
func (d *Daemon) Collector() prometheus.Collector { return collector{d} }

type collector struct{ d *Daemon }

var (
	descPackets = prometheus.NewDesc("lbd_dataplane_packets_total",
		"Packets seen by xdp_lb, by what happened to them.", []string{"reason"}, nil)
	descBytes = prometheus.NewDesc("lbd_dataplane_bytes_total",
		"Bytes seen by xdp_lb, by what happened to them.", []string{"reason"}, nil)
	descEvents = prometheus.NewDesc("lbd_dataplane_flow_events_total",
		"Flow table events: lru_hit, lru_miss, lru_skip_down, syn.", []string{"event"}, nil)
	descVIPPackets = prometheus.NewDesc("lbd_vip_packets_total",
		"Packets sent to a VIP's backends.", []string{"vip"}, nil)
	descVIPBytes = prometheus.NewDesc("lbd_vip_bytes_total",
		"Bytes sent to a VIP's backends.", []string{"vip"}, nil)
	descBackendPackets = prometheus.NewDesc("lbd_backend_packets_total",
		"Packets sent to a backend of a VIP.", []string{"vip", "backend"}, nil)
	descBackendSlots = prometheus.NewDesc("lbd_backend_ring_slots",
		"Ring slots a backend owns in a VIP's ring.", []string{"vip", "backend"}, nil)
	descBackendActive = prometheus.NewDesc("lbd_backend_active",
		"1 when the backend takes new flows (healthy, weight > 0).", []string{"vip", "backend"}, nil)
	descBackendUp = prometheus.NewDesc("lbd_backend_up",
		"1 unless the health verdict (the cluster's, or this node's alone) has the backend down.", []string{"vip", "backend"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descEvents, descVIPPackets, descVIPBytes,
		descBackendPackets, descBackendSlots, descBackendActive, descBackendUp} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.d.Status()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPackets, err)
		return
	}
	for reason, v := range st.Verdicts {
		ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(v.Packets), reason)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(v.Bytes), reason)
	}
	for ev, n := range st.Events {
		ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(n), ev)
	}
	for _, v := range st.VIPs {
		ch <- prometheus.MustNewConstMetric(descVIPPackets, prometheus.CounterValue, float64(v.Packets), v.Name)
		ch <- prometheus.MustNewConstMetric(descVIPBytes, prometheus.CounterValue, float64(v.Bytes), v.Name)
		for _, b := range v.Backends {
			ch <- prometheus.MustNewConstMetric(descBackendPackets, prometheus.CounterValue, float64(b.Packets), v.Name, b.Address)
			ch <- prometheus.MustNewConstMetric(descBackendSlots, prometheus.GaugeValue, float64(b.Slots), v.Name, b.Address)
			active := 0.0
			if b.State == backends.Active.String() {
				active = 1
			}
			ch <- prometheus.MustNewConstMetric(descBackendActive, prometheus.GaugeValue, active, v.Name, b.Address)
			up := 1.0
			if b.State == backends.Down.String() {
				up = 0
			}
			ch <- prometheus.MustNewConstMetric(descBackendUp, prometheus.GaugeValue, up, v.Name, b.Address)
		}
	}
}
