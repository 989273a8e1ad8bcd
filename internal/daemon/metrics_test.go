package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The collector renders a Status: counters per reason, event, VIP and backend, each
// backend's slots, and whether it is active (takes new flows) and up (not down).
func TestCollector(t *testing.T) {
	d, stats, cs := testStatus(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector{status: func() (Status, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		st := d.statusLocked(stats, cs)
		st.FlowTables = map[string]dataplane.TableFill{"ipv4": {Entries: 1200, Size: 4096}, "ipv6": {Entries: 3, Size: 4096}}
		return st, nil
	}})
	want := `# HELP lbd_backend_active 1 when the backend takes new flows (healthy, weight > 0).
# TYPE lbd_backend_active gauge
lbd_backend_active{backend="198.18.0.11",vip="dns"} 1
lbd_backend_active{backend="198.18.0.11",vip="web"} 1
lbd_backend_active{backend="198.18.0.12",vip="web"} 0
lbd_backend_active{backend="198.18.0.13",vip="web"} 0
# HELP lbd_backend_packets_total Packets sent to a backend of a VIP.
# TYPE lbd_backend_packets_total counter
lbd_backend_packets_total{backend="198.18.0.11",vip="dns"} 0
lbd_backend_packets_total{backend="198.18.0.11",vip="web"} 30
lbd_backend_packets_total{backend="198.18.0.12",vip="web"} 0
lbd_backend_packets_total{backend="198.18.0.13",vip="web"} 0
# HELP lbd_backend_ring_slots Ring slots a backend owns in a VIP's ring.
# TYPE lbd_backend_ring_slots gauge
lbd_backend_ring_slots{backend="198.18.0.11",vip="dns"} 211
lbd_backend_ring_slots{backend="198.18.0.11",vip="web"} 1009
lbd_backend_ring_slots{backend="198.18.0.12",vip="web"} 0
lbd_backend_ring_slots{backend="198.18.0.13",vip="web"} 0
# HELP lbd_backend_up 1 unless the backend is down in this node's rings: the health verdict (the cluster's, or this node's alone) has it down, or its next hop did not resolve.
# TYPE lbd_backend_up gauge
lbd_backend_up{backend="198.18.0.11",vip="dns"} 1
lbd_backend_up{backend="198.18.0.11",vip="web"} 1
lbd_backend_up{backend="198.18.0.12",vip="web"} 1
lbd_backend_up{backend="198.18.0.13",vip="web"} 0
# HELP lbd_dataplane_bytes_total Bytes seen by xdp_lb, by what happened to them.
# TYPE lbd_dataplane_bytes_total counter
lbd_dataplane_bytes_total{reason="pass"} 400
lbd_dataplane_bytes_total{reason="tx"} 3000
# HELP lbd_dataplane_flow_events_total Flow table events: lru_hit, lru_miss, lru_skip_down, syn, syn_unrecorded, quic_cid (a QUIC short header sent to the server its connection id names); fragment (a fragment balanced by its first fragment's ports), icmp_error (an ICMP error sent to the backend of the flow it quotes).
# TYPE lbd_dataplane_flow_events_total counter
lbd_dataplane_flow_events_total{event="lru_hit"} 20
lbd_dataplane_flow_events_total{event="lru_miss"} 10
# HELP lbd_dataplane_flow_table_entries Flows in xdp_lb's flow table, by family (counted at most every 10 s).
# TYPE lbd_dataplane_flow_table_entries gauge
lbd_dataplane_flow_table_entries{family="ipv4"} 1200
lbd_dataplane_flow_table_entries{family="ipv6"} 3
# HELP lbd_dataplane_flow_table_size Entries xdp_lb's flow table holds, by family (node.flow_table_size).
# TYPE lbd_dataplane_flow_table_size gauge
lbd_dataplane_flow_table_size{family="ipv4"} 4096
lbd_dataplane_flow_table_size{family="ipv6"} 4096
# HELP lbd_dataplane_packets_total Packets seen by xdp_lb, by what happened to them.
# TYPE lbd_dataplane_packets_total counter
lbd_dataplane_packets_total{reason="pass"} 5
lbd_dataplane_packets_total{reason="tx"} 30
# HELP lbd_vip_bytes_total Bytes sent to a VIP's backends.
# TYPE lbd_vip_bytes_total counter
lbd_vip_bytes_total{vip="dns"} 0
lbd_vip_bytes_total{vip="web"} 3000
# HELP lbd_vip_packets_total Packets sent to a VIP's backends.
# TYPE lbd_vip_packets_total counter
lbd_vip_packets_total{vip="dns"} 0
lbd_vip_packets_total{vip="web"} 30
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// A status that cannot be read fails the scrape rather than showing zeros.
func TestCollectorError(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector{status: func() (Status, error) { return Status{}, errors.New("map gone") }})
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "map gone") {
		t.Errorf("Gather: %v", err)
	}
}
