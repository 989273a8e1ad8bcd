package cluster

import (
	"github.com/lbdproj/lbd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	members           prometheus.Gauge
	configMismatch    prometheus.Gauge
	fingerprintDiverg prometheus.Gauge
	viewUpdates       prometheus.Counter
	joinFailures      prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lbd_cluster_members",
			Help: "Live LB nodes in the cluster (alive or suspect), this one included.",
		}),
		configMismatch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lbd_cluster_config_mismatch_members",
			Help: "Live LB nodes whose config digest differs from this node's; their views are not merged.",
		}),
		fingerprintDiverg: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lbd_cluster_fingerprint_divergence",
			Help: "1 when the ring fingerprints of live same-config nodes differ (or are not all known yet), else 0.",
		}),
		viewUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lbd_cluster_view_updates_total",
			Help: "Node views accepted: this node's changes and newer versions from other nodes.",
		}),
		joinFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lbd_cluster_join_failures_total",
			Help: "Attempts to join the cluster that reached none of the seeds.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.members, m.configMismatch, m.fingerprintDiverg, m.viewUpdates, m.joinFailures}
}

// register registers every collector or none.
func (m *metrics) register(r prometheus.Registerer) error {
	return promreg.Register(r, m.collectors()...)
}

func (m *metrics) unregister(r prometheus.Registerer) {
	promreg.Unregister(r, m.collectors()...)
}
