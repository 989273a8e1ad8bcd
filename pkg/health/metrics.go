package health

import "github.com/prometheus/client_golang/prometheus"

// Values of the "result" label of lbd_health_probes_total.
const (
	resultSuccess = "success"
	resultFailure = "failure" // refused, wrong status or body, bad reply, …
	resultTimeout = "timeout" // no answer within Spec.Timeout
)

type metrics struct {
	duration    *prometheus.HistogramVec // {vip,type}
	transitions *prometheus.CounterVec   // {vip,backend,to}
	probes      *prometheus.CounterVec   // {vip,result}
	lag         prometheus.Histogram     // how late probes start; the checker is falling behind when this grows
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lbd_health_probe_duration_seconds",
			Help:    "Time a health probe took, successful or not (a timeout counts as the timeout).",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 15), // 250µs … ~4s
		}, []string{"vip", "type"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lbd_health_transitions_total",
			Help: "Changes of this node's own probe state of a backend port behind a VIP, between served (unknown or up) and not served (down), by the state entered. The rings follow the verdict (lbd_backend_verdict_transitions_total), which in a cluster is the quorum of every LB node's probes.",
		}, []string{"vip", "backend", "to"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lbd_health_probes_total",
			Help: "Health probes completed, by result (success, failure, timeout).",
		}, []string{"vip", "result"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lbd_health_probe_lag_seconds",
			Help:    "Delay between a probe's scheduled start and its actual start; a growing tail means the checker cannot keep up.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.duration, m.transitions, m.probes, m.lag)
	}
	return m
}

// targetMetrics are one target's series, looked up once rather than per probe.
type targetMetrics struct {
	duration                  prometheus.Observer
	success, failure, timeout prometheus.Counter
}

func (m *metrics) forTarget(t *Target) targetMetrics {
	return targetMetrics{
		duration: m.duration.WithLabelValues(t.Key.VIP, t.Spec.Type),
		success:  m.probes.WithLabelValues(t.Key.VIP, resultSuccess),
		failure:  m.probes.WithLabelValues(t.Key.VIP, resultFailure),
		timeout:  m.probes.WithLabelValues(t.Key.VIP, resultTimeout),
	}
}
