package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/health"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Every backend of a probed VIP is a target with the VIP's spec; through the tunnel the probe
// goes to VIP:port with the backend's mark, and a backend the data path has no mark for yet
// is left out. Health type none probes nothing.
func TestTargets(t *testing.T) {
	cfg := mustParse(t, testConfig+`  - name: quiet
    address: 198.18.0.20
    port: 80
    health: {type: none}
    backends: [{address: 198.18.0.21}]
`)
	var asked []string
	mark := func(k dataplane.VIPKey, b netip.Addr) (uint32, bool) {
		asked = append(asked, k.String()+" "+b.String())
		return 0x4c420007, true
	}
	ts := targets(cfg, mark)
	var got []string
	for _, tg := range ts {
		got = append(got, tg.Key.String()+" -> "+tg.Addr.String())
	}
	want := []string{
		"web 198.18.0.11:80 -> 198.18.0.11:80",
		"web 198.18.0.12:80 -> 198.18.0.12:80",
		"web 198.18.0.13:80 -> 198.18.0.13:80",
		"dns 198.18.0.11:53 -> 198.18.0.53:53",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("targets:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(asked) != 1 || asked[0] != "198.18.0.53:53/udp 198.18.0.11" {
		t.Errorf("marks asked for %q", asked)
	}
	web, dns := ts[0], ts[3]
	wantWeb := health.Spec{Type: "tcp", Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2}
	if web.Mark != 0 || web.Spec.Type != wantWeb.Type || web.Spec.Interval != wantWeb.Interval ||
		web.Spec.Timeout != wantWeb.Timeout || web.Spec.Rise != 2 || web.Spec.Fall != 2 {
		t.Errorf("web target %+v", web)
	}
	if dns.Mark != 0x4c420007 || dns.Spec.Type != "udp" || string(dns.Spec.Payload) != "ping" {
		t.Errorf("dns target %+v", dns)
	}

	noMark := func(dataplane.VIPKey, netip.Addr) (uint32, bool) { return 0, false }
	if n := len(targets(cfg, noMark)); n != 3 {
		t.Errorf("%d targets without marks, want web's 3 only", n)
	}
}

func TestLocalResults(t *testing.T) {
	local, errs := localResults(map[health.Key]health.State{
		{VIP: "web", Backend: addr("198.18.0.11"), Port: 80}: {Status: health.StatusUp, Up: true},
		{VIP: "web", Backend: addr("198.18.0.12"), Port: 80}: {Status: health.StatusDown, LastErr: "connection refused"},
	})
	up, down := cluster.BackendKey{VIP: "web", Backend: addr("198.18.0.11")}, cluster.BackendKey{VIP: "web", Backend: addr("198.18.0.12")}
	if len(local) != 2 || !local[up] || local[down] {
		t.Errorf("local %v", local)
	}
	if errs[up] != "" || errs[down] != "connection refused" {
		t.Errorf("errs %v", errs)
	}
}

// A verdict changes the rings only when it changes a configured backend's state; each change
// is logged and counted once, by the state entered.
func TestTakeVerdict(t *testing.T) {
	var logs bytes.Buffer
	d, reg := newTestDaemon(t, resolverFor("198.18.0.11", "198.18.0.12", "198.18.0.13"))
	d.log = slog.New(slog.NewTextHandler(&logs, nil))
	served(t, d, mustParse(t, testConfig))
	ctx := context.Background()
	web11 := cluster.BackendKey{VIP: "web", Backend: addr("198.18.0.11")}
	dns11 := cluster.BackendKey{VIP: "dns", Backend: addr("198.18.0.11")}
	web13 := cluster.BackendKey{VIP: "web", Backend: addr("198.18.0.13")}
	stranger := cluster.BackendKey{VIP: "gone", Backend: addr("198.18.0.99")}
	take := func(verdict map[cluster.BackendKey]bool, by string) bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		local := map[cluster.BackendKey]bool{web11: false, dns11: true}
		errs := map[cluster.BackendKey]string{web11: "connection refused"}
		return d.takeVerdictLocked(ctx, local, errs, verdict, by)
	}

	if take(map[cluster.BackendKey]bool{web11: true, dns11: true, stranger: false}, "local probes") {
		t.Error("all up, and a key not in the config down: reported a change")
	}
	if !take(map[cluster.BackendKey]bool{web11: false, dns11: true, web13: false}, "cluster verdict") {
		t.Fatal("two backends down: no change reported")
	}
	if !d.down[web11] || d.down[dns11] || !d.down[web13] {
		t.Errorf("down %v", d.down)
	}
	if take(map[cluster.BackendKey]bool{web11: false, web13: false}, "cluster verdict") {
		t.Error("the same verdict again: reported a change")
	}
	if !take(map[cluster.BackendKey]bool{web11: false}, "cluster verdict") {
		t.Error("web13 back up (no longer in the verdict): no change reported")
	}
	if d.local[web11] || !d.local[dns11] || d.probeErr[web11] != "connection refused" {
		t.Errorf("local %v, errs %v", d.local, d.probeErr)
	}

	want := `# HELP lbd_backend_verdict_transitions_total Changes of the health verdict on a backend of a VIP, by the state entered: down takes it out of this node's rings, up puts it back. The verdict is the cluster's quorum of the LB nodes' probes, or this node's own probes when it is alone.
# TYPE lbd_backend_verdict_transitions_total counter
lbd_backend_verdict_transitions_total{backend="198.18.0.11",to="down",vip="web"} 1
lbd_backend_verdict_transitions_total{backend="198.18.0.13",to="down",vip="web"} 1
lbd_backend_verdict_transitions_total{backend="198.18.0.13",to="up",vip="web"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lbd_backend_verdict_transitions_total"); err != nil {
		t.Error(err)
	}
	for _, line := range []string{
		`level=WARN msg="backend down" vip=web backend=198.18.0.11 by="cluster verdict" local=down last_error="connection refused"`,
		`level=INFO msg="backend up" vip=web backend=198.18.0.13 by="cluster verdict" local="not probed" last_error=""`,
	} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("log lacks %s:\n%s", line, logs.String())
		}
	}
}
