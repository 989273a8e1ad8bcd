package main

// Metrics of the commands themselves: lbd run's config reloads, and lbd backend's counters
// (the backend has no daemon; its collector reads the programs' maps at scrape time).

import (
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/prometheus/client_golang/prometheus"
)

// reloadMetrics count lbd run's config reloads (SIGHUP or a changed file).
type reloadMetrics struct {
	total       *prometheus.CounterVec
	last        prometheus.Gauge
	lastSuccess prometheus.Gauge
}

// newReloadMetrics registers the reload metrics on reg; the config lbd started with counts
// as the last successful load, at start.
func newReloadMetrics(reg prometheus.Registerer, start time.Time) *reloadMetrics {
	m := &reloadMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lbd_config_reloads_total",
			Help: "Config reloads (SIGHUP or a changed file), by result: success, or failure (the file did not validate or could not be applied; the previous config keeps serving)."},
			[]string{"result"}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lbd_config_last_reload_successful",
			Help: "1 when the last config load (at start, or the last reload) succeeded, 0 when it was refused and the previous config is still serving."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lbd_config_last_reload_success_timestamp_seconds",
			Help: "When the config being served was loaded (Unix time)."}),
	}
	reg.MustRegister(m.total, m.last, m.lastSuccess)
	m.total.WithLabelValues("success")
	m.total.WithLabelValues("failure")
	m.last.Set(1)
	m.lastSuccess.Set(float64(start.UnixNano()) / 1e9)
	return m
}

// observe records a reload that ended with err (nil: applied) at now.
func (m *reloadMetrics) observe(err error, now time.Time) {
	if err != nil {
		m.total.WithLabelValues("failure").Inc()
		m.last.Set(0)
		return
	}
	m.total.WithLabelValues("success").Inc()
	m.last.Set(1)
	m.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
}

// backendCollector exposes lbd backend's counters, read from its maps at each scrape.
type backendCollector struct {
	stats        func() (dataplane.BackendHostStats, error)
	misdelivered func() (map[dataplane.VIPKey]dataplane.Counter, error) // nil: not collected
}

var (
	descTunnelPackets = prometheus.NewDesc("lbd_tunnel_packets_total",
		"Packets at this backend's end of the tunnel, by what happened to them: decap (decapsulated, VIP rewritten, flow recorded), decap_fragment (a fragment of a datagram to a VIP), decap_icmp_error (an ICMP error about a flow served here, rewritten for the kernel), restored (a reply given the VIP back as its source), decap_malformed, refused_source (not from an LB node), refused_vip (for a VIP not served here), refused_fragment (a later fragment whose first was not taken).",
		[]string{"reason"}, nil)
	descTunnelBytes = prometheus.NewDesc("lbd_tunnel_bytes_total",
		"Bytes at this backend's end of the tunnel, by reason as lbd_tunnel_packets_total.", []string{"reason"}, nil)
	descReturnPackets = prometheus.NewDesc("lbd_tunnel_return_packets_total",
		"Replies sent from this backend with a VIP as their source (direct server return), by VIP (addr:port/protocol).", []string{"vip"}, nil)
	descReturnBytes = prometheus.NewDesc("lbd_tunnel_return_bytes_total",
		"Bytes of replies sent from this backend with a VIP as their source, by VIP.", []string{"vip"}, nil)
	descMisdeliveredPackets = prometheus.NewDesc("lbd_tunnel_misdelivered_packets_total",
		"TCP packets other than SYN that an LB node sent here for a VIP flow this host holds no socket for: the packets of broken flows, which the host resets (flow sync), by VIP (addr:port/protocol).",
		[]string{"vip"}, nil)
	descMisdeliveredBytes = prometheus.NewDesc("lbd_tunnel_misdelivered_bytes_total",
		"Bytes of misdelivered packets, by VIP.", []string{"vip"}, nil)
)

func (c backendCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTunnelPackets, descTunnelBytes, descReturnPackets, descReturnBytes,
		descMisdeliveredPackets, descMisdeliveredBytes} {
		ch <- d
	}
}

func (c backendCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descTunnelPackets, err)
		return
	}
	for reason, v := range st.Counters {
		ch <- prometheus.MustNewConstMetric(descTunnelPackets, prometheus.CounterValue, float64(v.Packets), reason)
		ch <- prometheus.MustNewConstMetric(descTunnelBytes, prometheus.CounterValue, float64(v.Bytes), reason)
	}
	for vip, v := range st.Return {
		ch <- prometheus.MustNewConstMetric(descReturnPackets, prometheus.CounterValue, float64(v.Packets), vip.String())
		ch <- prometheus.MustNewConstMetric(descReturnBytes, prometheus.CounterValue, float64(v.Bytes), vip.String())
	}
	if c.misdelivered == nil {
		return
	}
	mis, err := c.misdelivered()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descMisdeliveredPackets, err)
		return
	}
	for vip, v := range mis {
		ch <- prometheus.MustNewConstMetric(descMisdeliveredPackets, prometheus.CounterValue, float64(v.Packets), vip.String())
		ch <- prometheus.MustNewConstMetric(descMisdeliveredBytes, prometheus.CounterValue, float64(v.Bytes), vip.String())
	}
}
