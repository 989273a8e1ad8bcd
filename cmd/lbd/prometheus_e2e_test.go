package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/internal/wait"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"
)

// The operator's kit in configs/: alert rules and dashboards, read as shipped.
var (
	rulesFile  = filepath.Join("..", "..", "configs", "prometheus", "lbd.rules.yml")
	lbDash     = filepath.Join("..", "..", "configs", "grafana", "lbd-lb-nodes.json")
	beDash     = filepath.Join("..", "..", "configs", "grafana", "lbd-backends.json")
	metricName = regexp.MustCompile(`\b(?:lbd|process|go)_[a-zA-Z0-9_]+\b`)
)

// ruleExprs are the alert rules' expressions, by alert name.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r.Expr
		}
	}
	return out
}

// dashExprs are a dashboard's queries, by "panel title/refId", and its variables' queries.
func dashExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ RefID, Expr string }
		}
		Templating struct {
			List []struct{ Name, Definition string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			out[p.Title+"/"+q.RefID] = q.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			out["variable "+v.Name] = v.Definition
		}
	}
	return out
}

// families is the set of metric families a gatherer exposes, with their types.
func families(t *testing.T, gs ...prometheus.Gatherer) map[string]dto.MetricType {
	t.Helper()
	out := map[string]dto.MetricType{}
	for _, g := range gs {
		fams, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			out[f.GetName()] = f.GetType()
		}
	}
	return out
}

// exported reports whether name is a series of one of fams: a family, or a histogram's or
// summary's _bucket, _sum or _count.
func exported(name string, fams map[string]dto.MetricType) bool {
	if _, ok := fams[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if typ, ok := fams[base]; ok && (typ == dto.MetricType_HISTOGRAM || typ == dto.MetricType_SUMMARY) {
				return true
			}
		}
	}
	return false
}

// checkNames fails for each metric name in exprs that fams do not export.
func checkNames(t *testing.T, what string, exprs map[string]string, fams map[string]dto.MetricType) int {
	t.Helper()
	n := 0
	for _, where := range slices.Sorted(maps.Keys(exprs)) {
		for _, name := range metricName.FindAllString(exprs[where], -1) {
			n++
			if !exported(name, fams) {
				t.Errorf("%s, %s: %s is not on the live /metrics", what, where, name)
			}
		}
	}
	return n
}

// promAPI queries a Prometheus HTTP API from inside a host's namespace.
type promAPI struct {
	client *http.Client
	base   string
}

func (p promAPI) get(ctx context.Context, path string, q url.Values, out any) error {
	u := p.base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, b)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, env.Status, env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p promAPI) alerts(ctx context.Context) ([]promAlert, error) {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	err := p.get(ctx, "/api/v1/alerts", nil, &data)
	return data.Alerts, err
}

// query evaluates expr now and returns how many series it gives.
func (p promAPI) query(ctx context.Context, expr string) (int, error) {
	var data struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	}
	if err := p.get(ctx, "/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return 0, err
	}
	return len(data.Result), nil
}

// startPrometheus runs Debian's prometheus on LB node 0, scraping its lbd (job lbd) and the
// backends' (job lbd-backend) every second and evaluating the shipped rules every second.
func startPrometheus(t *testing.T, s *sandbox, bin string) promAPI {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var backends []string
	for _, h := range s.fleet.Backends {
		backends = append(backends, fmt.Sprintf("%q", s.backendAPI(h).String()))
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: lbd
    static_configs: [{targets: [%q]}]
  - job_name: lbd-backend
    static_configs: [{targets: [%s]}]
`, rules, s.cfg.Node.APIAddr.String(), strings.Join(backends, ", "))
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const listen = "127.0.0.1:9090" // the LB node's own loopback
	p, err := s.fleet.Start(s.fleet.LBs[0], bin, "--config.file="+path, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("prometheus:\n%s", p.Output())
		}
		_ = p.Stop()
	})
	api := promAPI{client: s.fleet.LBs[0].HTTPClient(5 * time.Second), base: "http://" + listen}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// ready when both jobs are up
	err = wait.Until(30*time.Second, 200*time.Millisecond, func() (bool, error) {
		if p.Exited() {
			return true, fmt.Errorf("prometheus exited:\n%s", p.Output())
		}
		n, err := api.query(ctx, `up == 1`)
		return err == nil && n == 1+len(s.fleet.Backends), err
	})
	if err != nil {
		t.Fatalf("prometheus scraping lbd: %v", err)
	}
	return api
}

// TestPrometheusFiresBackendDown runs a real Prometheus (Debian's package) on the shipped
// rules against a real lbd run and lbd backends in the test bed. No alert fires while all is
// well; when a backend's service stops, LBDBackendDown fires for it and no other. Then every
// dashboard query evaluates on that Prometheus and returns data, and every metric name in
// the rules and dashboards is on the live /metrics of lbd run or lbd backend.
func TestPrometheusFiresBackendDown(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("skipping: prometheus is not installed (Debian's prometheus package; scripts/deps.sh installs it)")
	}
	s := mustSandboxOpts(t, sandboxOptions{config: configs.Demo, lbs: 1, backends: 3, cluster: true})
	api := startPrometheus(t, s, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// traffic, so that the traffic panels have some (the backends count replies per VIP only
	// once there are any)
	if tl := s.Requests(ctx, 30, 4); tl.Failures != 0 {
		t.Fatalf("%d of 30 requests failed: %v", tl.Failures, tl.Errors)
	}

	// quiet while all is well: the rules have been evaluated on the scraped series a few times
	since := time.Now()
	err = wait.Until(30*time.Second, 200*time.Millisecond, func() (bool, error) {
		var rules struct {
			Groups []struct {
				LastEvaluation time.Time `json:"lastEvaluation"`
			} `json:"groups"`
		}
		if err := api.get(ctx, "/api/v1/rules", nil, &rules); err != nil {
			return false, err
		}
		return len(rules.Groups) == 1 && rules.Groups[0].LastEvaluation.After(since.Add(3*time.Second)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := api.alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if a.State == "firing" || a.Labels["alertname"] == "LBDBackendDown" {
			t.Errorf("with every backend up: %s %v", a.State, a.Labels)
		}
	}

	be := s.fleet.Backends[0]
	stopped := time.Now()
	if err := s.StopServer(be.Name); err != nil {
		t.Fatal(err)
	}
	var pending, firing time.Duration
	err = wait.Until(90*time.Second, 250*time.Millisecond, func() (bool, error) {
		alerts, err := api.alerts(ctx)
		if err != nil {
			return false, err
		}
		for _, a := range alerts {
			if a.Labels["alertname"] != "LBDBackendDown" {
				continue
			}
			if a.Labels["backend"] != be.Addr.String() || a.Labels["vip"] != "web" || a.Labels["job"] != "lbd" {
				return true, fmt.Errorf("LBDBackendDown for %v, only %s of web is down", a.Labels, be.Addr)
			}
			if pending == 0 {
				pending = time.Since(stopped)
			}
			if a.State == "firing" {
				firing = time.Since(stopped)
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("LBDBackendDown: %v", err)
	}
	t.Logf("%s's service stopped: LBDBackendDown pending after %v, firing after %v (for: 30s)",
		be.Name, pending.Round(100*time.Millisecond), firing.Round(100*time.Millisecond))

	t.Run("dashboard queries", func(t *testing.T) {
		vars := strings.NewReplacer("$__rate_interval", "15s", "$job", ".*", "$instance", ".*", "$vip", ".*")
		for _, path := range []string{lbDash, beDash} {
			for where, expr := range dashExprs(t, path) {
				if strings.HasPrefix(where, "variable ") {
					continue // label_values() is Grafana's, not PromQL
				}
				n, err := api.query(ctx, vars.Replace(expr))
				if err != nil || n == 0 {
					t.Errorf("%s, %s: %d series, %v\n  %s", filepath.Base(path), where, n, err, expr)
				}
			}
		}
	})

	t.Run("metric names", func(t *testing.T) {
		lb, err := s.LBMetrics(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		var bms []prometheus.Gatherer
		for i := range s.fleet.Backends {
			g, err := s.BackendMetrics(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			bms = append(bms, g)
		}
		lbFams, beFams := families(t, lb), families(t, bms...)
		both := families(t, append(bms, lb)...)
		n := checkNames(t, "lbd-lb-nodes.json", dashExprs(t, lbDash), lbFams)
		n += checkNames(t, "lbd-backends.json", dashExprs(t, beDash), beFams)
		n += checkNames(t, "lbd.rules.yml", ruleExprs(t), both)
		t.Logf("%d metric names in the rules and dashboards, all on the live /metrics of lbd run (%d families) or lbd backend (%d)",
			n, len(lbFams), len(beFams))
	})
}
