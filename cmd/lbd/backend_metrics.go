package main

// lbd backend --metrics: the backend programs' counters for Prometheus, on the backend's own
// registry, read from the maps at scrape time.

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	descHostPackets = prometheus.NewDesc("lbd_backendhost_packets_total",
		"Packets the backend programs acted on, by what they did: decap, decap_malformed, restored, refused_source, refused_vip.",
		[]string{"reason"}, nil)
	descHostBytes = prometheus.NewDesc("lbd_backendhost_bytes_total",
		"Bytes the backend programs acted on, by what they did.", []string{"reason"}, nil)
	descReturnPackets = prometheus.NewDesc("lbd_backendhost_return_packets_total",
		"Replies restored to a VIP as their source (the direct server return traffic), by VIP (addr:port/proto).",
		[]string{"vip"}, nil)
	descReturnBytes = prometheus.NewDesc("lbd_backendhost_return_bytes_total",
		"Bytes of replies restored to a VIP, by VIP.", []string{"vip"}, nil)
	descMisPackets = prometheus.NewDesc("lbd_backendhost_misdelivered_packets_total",
		"TCP packets other than SYN that an LB node sent here for a VIP flow this host holds no socket for: the packets of broken flows (the host resets them), by VIP (addr:port/proto).",
		[]string{"vip"}, nil)
	descMisBytes = prometheus.NewDesc("lbd_backendhost_misdelivered_bytes_total",
		"Bytes of misdelivered packets, by VIP.", []string{"vip"}, nil)
)

// backendCollector reads a backend host's counters at each scrape.
type backendCollector struct{ b *dataplane.BackendHost }

func (c backendCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHostPackets, descHostBytes, descReturnPackets, descReturnBytes, descMisPackets, descMisBytes} {
		ch <- d
	}
}

func (c backendCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.b.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descHostPackets, err)
		return
	}
	mis, err := c.b.Misdelivered()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descMisPackets, err)
		return
	}
	for reason, v := range st.Counters {
		ch <- prometheus.MustNewConstMetric(descHostPackets, prometheus.CounterValue, float64(v.Packets), reason)
		ch <- prometheus.MustNewConstMetric(descHostBytes, prometheus.CounterValue, float64(v.Bytes), reason)
	}
	for k, v := range st.Return {
		ch <- prometheus.MustNewConstMetric(descReturnPackets, prometheus.CounterValue, float64(v.Packets), k.String())
		ch <- prometheus.MustNewConstMetric(descReturnBytes, prometheus.CounterValue, float64(v.Bytes), k.String())
	}
	for k, v := range mis {
		ch <- prometheus.MustNewConstMetric(descMisPackets, prometheus.CounterValue, float64(v.Packets), k.String())
		ch <- prometheus.MustNewConstMetric(descMisBytes, prometheus.CounterValue, float64(v.Bytes), k.String())
	}
}

// serveBackendMetrics serves /metrics for b on addr (ip:port) until the returned stop is
// called. An address other than loopback is warned about, as node.api_addr is.
func serveBackendMetrics(log *slog.Logger, addr string, b *dataplane.BackendHost) (stop func(), err error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, errors.New("not ip:port")
	}
	if !ap.Addr().IsLoopback() {
		log.Warn("--metrics is not a loopback address: /metrics has no authentication", "addr", addr)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(backendCollector{b}, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("backend metrics served", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
