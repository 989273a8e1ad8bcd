package daemon

// Metrics: the data path's counters and the backends' states, read at scrape time, and the
// verdict changes, counted as they happen.

import (
	"github.com/lbdproj/lbd/pkg/backends"
	"github.com/prometheus/client_golang/prometheus"
)

// newVerdictTransitions counts the verdict's changes, registered on reg.
func newVerdictTransitions(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lbd_backend_verdict_transitions_total",
		Help: "Changes of the health verdict on a backend of a VIP, by the state entered: down takes it out of this node's rings, up puts it back. The verdict is the cluster's quorum of the LB nodes' probes, or this node's own probes when it is alone."},
		[]string{"vip", "backend", "to"})
	reg.MustRegister(c)
	return c
}

// Collector exposes the data path's counters to Prometheus, read at scrape time.
func (d *Daemon) Collector() prometheus.Collector { return collector{status: d.Status} }

// collector turns a Status, taken at each scrape, into metrics.
type collector struct{ status func() (Status, error) }

var (
	descPackets = prometheus.NewDesc("lbd_dataplane_packets_total",
		"Packets seen by xdp_lb, by what happened to them.", []string{"reason"}, nil)
	descBytes = prometheus.NewDesc("lbd_dataplane_bytes_total",
		"Bytes seen by xdp_lb, by what happened to them.", []string{"reason"}, nil)
	descEvents = prometheus.NewDesc("lbd_dataplane_flow_events_total",
		"Flow table events: lru_hit, lru_miss, lru_skip_down, syn, syn_unrecorded, quic_cid (a QUIC short header sent to the server its connection id names); fragment (a fragment balanced by its first fragment's ports), icmp_error (an ICMP error sent to the backend of the flow it quotes).", []string{"event"}, nil)
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
	descXDPMode = prometheus.NewDesc("lbd_dataplane_xdp_mode",
		"1 for the mode xdp_lb runs in (native, generic, offload).", []string{"mode"}, nil)
	descFlowEntries = prometheus.NewDesc("lbd_dataplane_flow_table_entries",
		"Flows in xdp_lb's flow table, by family (counted at most every 10 s).", []string{"family"}, nil)
	descFlowSize = prometheus.NewDesc("lbd_dataplane_flow_table_size",
		"Entries xdp_lb's flow table holds, by family (node.flow_table_size).", []string{"family"}, nil)
	descBackendUp = prometheus.NewDesc("lbd_backend_up",
		"1 unless the backend is down in this node's rings: the health verdict (the cluster's, or this node's alone) has it down, or its next hop did not resolve.", []string{"vip", "backend"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descEvents, descVIPPackets, descVIPBytes,
		descBackendPackets, descBackendSlots, descBackendActive, descBackendUp, descFlowEntries, descFlowSize, descXDPMode} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.status()
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
	if st.XDPMode != "" {
		ch <- prometheus.MustNewConstMetric(descXDPMode, prometheus.GaugeValue, 1, st.XDPMode)
	}
	for fam, f := range st.FlowTables {
		ch <- prometheus.MustNewConstMetric(descFlowEntries, prometheus.GaugeValue, float64(f.Entries), fam)
		ch <- prometheus.MustNewConstMetric(descFlowSize, prometheus.GaugeValue, float64(f.Size), fam)
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
