package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/prometheus/client_golang/prometheus"
)

// testStatus serves testConfig with .13 unresolved, this node's probes having web's .12
// down, two nodes in the cluster, and some counters.
func testStatus(t *testing.T) (*Daemon, dataplane.Stats, *cluster.Status) {
	t.Helper()
	d, _ := newTestDaemon(t, resolverFor("198.18.0.11", "198.18.0.12"))
	served(t, d, mustParse(t, testConfig))
	web11 := cluster.BackendKey{VIP: "web", Backend: addr("198.18.0.11")}
	web12 := cluster.BackendKey{VIP: "web", Backend: addr("198.18.0.12")}
	d.local = map[cluster.BackendKey]bool{web11: true, web12: false}
	d.probeErr = map[cluster.BackendKey]string{web11: "", web12: "connection refused"}
	web := dataplane.VIPKey{Addr: addr("198.18.0.10"), Port: 80, Proto: 6}
	stats := dataplane.Stats{
		Verdicts: map[string]dataplane.Counter{"tx": {Packets: 30, Bytes: 3000}, "pass": {Packets: 5, Bytes: 400}},
		Events:   map[string]uint64{"lru_hit": 20, "lru_miss": 10},
		VIPs:     map[dataplane.VIPKey]dataplane.Counter{web: {Packets: 30, Bytes: 3000}},
		Backends: map[dataplane.VIPKey]map[netip.Addr]dataplane.Counter{web: {addr("198.18.0.11"): {Packets: 30, Bytes: 3000}}},
	}
	cs := &cluster.Status{Quorum: cluster.QuorumMajority, FingerprintsAgree: true,
		Members: []cluster.Member{
			{Name: "lb1", Addr: "198.18.0.2:7946", State: "alive", SameConfig: true, Voter: true, Fingerprint: "f1", Self: true},
			{Name: "lb2", Addr: "198.18.0.3:7946", State: "alive", SameConfig: true, Voter: true, Fingerprint: "f1"},
		},
		Backends: []cluster.BackendStatus{{Key: web12, Views: map[string]bool{"lb1": false, "lb2": true}, Up: 1, Probers: 2}},
	}
	return d, stats, cs
}

// The status is what is served: each backend's state, slots, next hop and last error
// (unresolved next hop first, else the last probe's), this node's probe and every node's
// view, the counters, and the cluster's members.
func TestStatus(t *testing.T) {
	d, stats, cs := testStatus(t)
	d.mu.Lock()
	got := d.statusLocked(stats, cs)
	fp := d.fingerprintLocked()
	webFP, dnsFP := d.vips[0].fingerprint, d.vips[1].fingerprint
	d.mu.Unlock()

	want := Status{
		Node: "lb1", Interface: "eth0", PinDir: "/sys/fs/bpf/lbd", ConfigDigest: d.cfg.Digest(),
		Verdicts: stats.Verdicts, Events: stats.Events,
		VIPs: []VIPStatus{{
			Name: "web", Address: "198.18.0.10", Port: 80, Protocol: "tcp", RingSize: 1009, Fingerprint: webFP,
			Packets: 30, Bytes: 3000,
			Backends: []BackendStatus{
				{Address: "198.18.0.11", Weight: 1, State: "active", Probe: "up", Slots: 1009,
					NextHop: "02:00:00:00:00:0b", Packets: 30, Bytes: 3000},
				{Address: "198.18.0.12", Weight: 0, State: "draining", Probe: "down", Views: map[string]bool{"lb1": false, "lb2": true},
					NextHop: "02:00:00:00:00:0c", Error: "connection refused"},
				{Address: "198.18.0.13", Weight: 2, State: "down", Probe: "not probed", Error: errNoNeighbour.Error()},
			},
		}, {
			Name: "dns", Address: "198.18.0.53", Port: 53, Protocol: "udp", RingSize: 211, Fingerprint: dnsFP,
			Backends: []BackendStatus{
				{Address: "198.18.0.11", Weight: 1, State: "active", Probe: "not probed", Slots: 211, NextHop: "02:00:00:00:00:0b"},
			},
		}},
		Cluster: &ClusterStatus{Quorum: "majority", FingerprintsAgree: true, Fingerprint: fp, Members: []MemberStatus{
			{Name: "lb1", Addr: "198.18.0.2:7946", State: "alive", SameConfig: true, Voter: true, Fingerprint: "f1", Self: true},
			{Name: "lb2", Addr: "198.18.0.3:7946", State: "alive", SameConfig: true, Voter: true, Fingerprint: "f1"},
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if fp != digestOf(map[string]string{"web": webFP, "dns": dnsFP}) {
		t.Errorf("cluster fingerprint %s is not the digest of the VIPs' rings", fp)
	}

	// a node alone has no cluster section
	d.mu.Lock()
	alone := d.statusLocked(stats, nil)
	d.mu.Unlock()
	if alone.Cluster != nil || alone.VIPs[0].Backends[1].Views != nil {
		t.Errorf("alone: cluster %+v, views %v", alone.Cluster, alone.VIPs[0].Backends[1].Views)
	}
}

// The API serves the status as JSON, the metrics of the gatherer it is given, and /healthz;
// it is read-only.
func TestHandler(t *testing.T) {
	d, stats, cs := testStatus(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector{status: func() (Status, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.statusLocked(stats, cs), nil
	}})
	explain := func(f dataplane.Flow) (Explanation, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.explainLocked(f, dataplane.Explanation{IsVIP: true, VIP: dataplane.VIPKey{Addr: f.Dst, Port: f.DstPort, Proto: f.Proto},
			Ring: dataplane.RingSlot{Size: 1009, Backend: addr("198.18.0.11")}, Backend: addr("198.18.0.11")}, nil), nil
	}
	srv := httptest.NewServer(handler(func() (Status, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.statusLocked(stats, cs), nil
	}, explain, reg))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
		t.Fatalf("/status: %d %v\n%s", code, err, body)
	}
	if st.Node != "lb1" || len(st.VIPs) != 2 || st.VIPs[0].Backends[2].State != "down" || st.Cluster.Quorum != "majority" {
		t.Errorf("/status: %+v", st)
	}
	for _, field := range []string{`"ring_fingerprint"`, `"fingerprints_agree": true`, `"next_hop": "02:00:00:00:00:0b"`} {
		if !strings.Contains(body, field) {
			t.Errorf("/status lacks %s", field)
		}
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `lbd_backend_up{backend="198.18.0.13",vip="web"} 0`) {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	code, body = get("/explain?proto=tcp&src=198.18.0.1:40000&dst=198.18.0.10:80")
	var ex Explanation
	if err := json.Unmarshal([]byte(body), &ex); code != 200 || err != nil || ex.VIP != "web" || ex.Backend != "198.18.0.11" || ex.By != "ring" {
		t.Errorf("/explain: %d %v %+v\n%s", code, err, ex, body)
	}
	if code, body := get("/explain?proto=icmp&src=198.18.0.1:1&dst=198.18.0.10:80"); code != 400 || !strings.Contains(body, "want tcp or udp") {
		t.Errorf("/explain of icmp: %d %s", code, body)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	resp, err := http.Post(srv.URL+"/status", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status: %s, want 405", resp.Status)
	}
}
