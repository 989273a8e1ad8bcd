package flowsync

import (
	"github.com/lbdproj/lbd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	scanned    prometheus.Counter
	scanTime   prometheus.Histogram
	sendErrors prometheus.Counter
	badMsgs    prometheus.Counter
	dropped    prometheus.Counter
	full       prometheus.Counter
	funcs      []prometheus.Collector
}

// descLookups: the data path's adopted lookups, read at scrape time.
var descLookups = prometheus.NewDesc("lbd_flowsync_adopted_lookups_total",
	"Flow-table misses that found an adopted flow: hit (the moved flow kept its backend) or stale (its backend is down, gone or of another VIP here, and the ring decided).",
	[]string{"result"}, nil)

type lookups struct{ s *Syncer }

func (l lookups) Describe(ch chan<- *prometheus.Desc) { ch <- descLookups }

func (l lookups) Collect(ch chan<- prometheus.Metric) {
	ev, err := l.s.o.DataPath.FlowSyncEvents()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descLookups, err)
		return
	}
	for result, n := range ev {
		ch <- prometheus.MustNewConstMetric(descLookups, prometheus.CounterValue, float64(n), result)
	}
}

func newMetrics(s *Syncer) *metrics {
	status := func(f func(Status) int) func() float64 {
		return func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			return float64(f(s.status))
		}
	}
	m := &metrics{
		scanned: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbd_flowsync_flows_scanned_total",
			Help: "Flow-table entries read by flow sync's scans for the flows at risk."}),
		scanTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lbd_flowsync_scan_duration_seconds",
			Help:    "Time one scan of both flow tables took.",
			Buckets: []float64{.001, .003, .01, .03, .1, .3, 1, 3}}),
		sendErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbd_flowsync_send_errors_total",
			Help: "Flow sync messages that could not be sent to a node (it gets the whole set next round)."}),
		badMsgs: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbd_flowsync_bad_messages_total",
			Help: "Flow sync messages received that did not decode."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbd_flowsync_dropped_messages_total",
			Help: "Flow sync messages received while the queue was full, dropped (the sender's next refresh repeats them)."}),
		full: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbd_flowsync_flows_refused_total",
			Help: "Shared flows not adopted because the adopted-flow table of their family was full."}),
	}
	m.funcs = []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lbd_flowsync_flows_at_risk",
			Help: "Flows in this node's tables whose backend its rings no longer pick, at the last scan."},
			status(func(st Status) int { return st.AtRisk })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lbd_flowsync_flows_shared",
			Help: "Flows this node shares with the other LB nodes (its flows at risk, on backends that are not down)."},
			status(func(st Status) int { return st.Shared })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lbd_flowsync_flows_adopted",
			Help: "Flows other LB nodes shared that this node's data path holds."},
			status(func(st Status) int { return st.Adopted })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lbd_flowsync_flows_unresolved",
			Help: "Flows other LB nodes shared whose VIP or backend this node does not serve (kept, not in the data path)."},
			status(func(st Status) int { return st.Unresolved })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "lbd_flowsync_sent_bytes_total",
			Help: "Bytes of flow sync messages sent to other nodes (before memberlist compresses and encrypts them)."},
			func() float64 { return float64(s.sent.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "lbd_flowsync_received_bytes_total",
			Help: "Bytes of flow sync messages received from other nodes (decrypted and decompressed)."},
			func() float64 { return float64(s.received.Load()) }),
		lookups{s},
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return append([]prometheus.Collector{m.scanned, m.scanTime, m.sendErrors, m.badMsgs, m.dropped, m.full}, m.funcs...)
}

// register registers every collector or none.
func (m *metrics) register(r prometheus.Registerer) error {
	return promreg.Register(r, m.collectors()...)
}

// Unregister removes the metrics from r.
func (s *Syncer) Unregister(r prometheus.Registerer) {
	promreg.Unregister(r, s.m.collectors()...)
}
