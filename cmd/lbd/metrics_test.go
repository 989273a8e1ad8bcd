package main

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A reload refused sets last_reload_successful to 0 and counts a failure, the timestamp
// staying at the config being served; a reload applied puts both right.
func TestReloadMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	start := time.Unix(1700000000, 0)
	m := newReloadMetrics(reg, start)
	m.observe(errors.New("t.yaml:3:1: bad"), start.Add(time.Minute))
	want := `# HELP lbd_config_last_reload_success_timestamp_seconds When the config being served was loaded (Unix time).
# TYPE lbd_config_last_reload_success_timestamp_seconds gauge
lbd_config_last_reload_success_timestamp_seconds 1.7e+09
# HELP lbd_config_last_reload_successful 1 when the last config load (at start, or the last reload) succeeded, 0 when it was refused and the previous config is still serving.
# TYPE lbd_config_last_reload_successful gauge
lbd_config_last_reload_successful 0
# HELP lbd_config_reloads_total Config reloads (SIGHUP or a changed file), by result: success, or failure (the file did not validate or could not be applied; the previous config keeps serving).
# TYPE lbd_config_reloads_total counter
lbd_config_reloads_total{result="failure"} 1
lbd_config_reloads_total{result="success"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	m.observe(nil, start.Add(2*time.Minute))
	if got := testutil.ToFloat64(m.last); got != 1 {
		t.Errorf("last_reload_successful after a good reload: %v", got)
	}
	if got := testutil.ToFloat64(m.lastSuccess); got != 1700000120 {
		t.Errorf("last success timestamp %v, want 1700000120", got)
	}
}

func TestBackendCollector(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(backendCollector{stats: func() (dataplane.BackendHostStats, error) {
		return dataplane.BackendHostStats{
			Counters: map[string]dataplane.Counter{"decap": {Packets: 3, Bytes: 300}, "refused_source": {Packets: 1, Bytes: 60}},
			Return: map[dataplane.VIPKey]dataplane.Counter{
				{Addr: netip.MustParseAddr("198.18.0.10"), Port: 80, Proto: 6}:   {Packets: 2, Bytes: 200},
				{Addr: netip.MustParseAddr("2001:db8::53"), Port: 53, Proto: 17}: {Packets: 1, Bytes: 100},
			},
		}, nil
	}})
	want := `# HELP lbd_tunnel_return_packets_total Replies sent from this backend with a VIP as their source (direct server return), by VIP (addr:port/protocol).
# TYPE lbd_tunnel_return_packets_total counter
lbd_tunnel_return_packets_total{vip="198.18.0.10:80/tcp"} 2
lbd_tunnel_return_packets_total{vip="[2001:db8::53]:53/udp"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lbd_tunnel_return_packets_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 8 {
		t.Errorf("%d series, %v; want 8 (2 reasons and 2 VIPs, packets and bytes)", n, err)
	}
	bad := prometheus.NewPedanticRegistry()
	bad.MustRegister(backendCollector{stats: func() (dataplane.BackendHostStats, error) {
		return dataplane.BackendHostStats{}, errors.New("map gone")
	}})
	if _, err := bad.Gather(); err == nil || !strings.Contains(err.Error(), "map gone") {
		t.Errorf("a failed read: %v, want the scrape to fail", err)
	}
}
