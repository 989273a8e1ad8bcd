package announce

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the BGP metrics: the transitions counted as they happen, the sessions and
// addresses read from Status at scrape time.
type metrics struct {
	peerTransitions  *prometheus.CounterVec
	routeTransitions *prometheus.CounterVec
	status           func() Status
}

var (
	descPeerUp = prometheus.NewDesc("lbd_bgp_peer_up",
		"1 while the BGP session to the peer is established.", []string{"peer"}, nil)
	descAnnounced = prometheus.NewDesc("lbd_bgp_announced",
		"1 while the host route to the VIP address is announced.", []string{"address"}, nil)
	descHeld = prometheus.NewDesc("lbd_bgp_held",
		"1 for each reason a VIP address is not announced: dataplane, min_healthy, config_differs, rings_differ, cluster_joining, no_peer, announce_delay, shutdown.",
		[]string{"address", "reason"}, nil)
)

func newMetrics() *metrics {
	return &metrics{
		peerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lbd_bgp_peer_transitions_total",
			Help: "BGP sessions going up (established) or down, by peer."}, []string{"peer", "to"}),
		routeTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lbd_bgp_route_transitions_total",
			Help: "Host routes to VIP addresses announced or withdrawn, by address."}, []string{"address", "to"}),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.peerTransitions.Describe(ch)
	m.routeTransitions.Describe(ch)
	ch <- descPeerUp
	ch <- descAnnounced
	ch <- descHeld
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.peerTransitions.Collect(ch)
	m.routeTransitions.Collect(ch)
	st := m.status()
	for _, p := range st.Peers {
		up := 0.0
		if p.State == "established" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descPeerUp, prometheus.GaugeValue, up, p.Address)
	}
	for _, a := range st.Addresses {
		v := 0.0
		if a.Announced {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descAnnounced, prometheus.GaugeValue, v, a.Address)
		seen := map[string]bool{}
		for _, r := range a.Held {
			if !seen[r.Code] {
				seen[r.Code] = true
				ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, 1, a.Address, r.Code)
			}
		}
	}
}
