package configs_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr       string `json:"expr"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
}

// The dashboards are Grafana JSON whose every panel queries the Prometheus picked in the
// datasource variable, with variables that exist, under unique ids. (That each metric name
// is one lbd exports is checked against a live lbd in cmd/lbd's Prometheus test.)
func TestGrafanaDashboards(t *testing.T) {
	paths, err := filepath.Glob("grafana/*.json")
	if err != nil || len(paths) < 2 {
		t.Fatalf("dashboards: %v %v", paths, err)
	}
	varRE := regexp.MustCompile(`\$(\w+)`)
	uids := map[string]bool{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if d.UID == "" || uids[d.UID] || d.Title == "" {
			t.Errorf("%s: uid %q (taken: %v), title %q", p, d.UID, uids[d.UID], d.Title)
		}
		uids[d.UID] = true
		vars := map[string]bool{"__rate_interval": true}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
		}
		ids := map[int]bool{}
		queries := 0
		for _, panel := range d.Panels {
			if ids[panel.ID] {
				t.Errorf("%s: panel id %d twice", p, panel.ID)
			}
			ids[panel.ID] = true
			if panel.Type == "row" {
				continue
			}
			if panel.Datasource.UID != "${datasource}" || len(panel.Targets) == 0 {
				t.Errorf("%s: panel %q: datasource %q, %d queries", p, panel.Title, panel.Datasource.UID, len(panel.Targets))
			}
			for _, q := range panel.Targets {
				queries++
				if q.Expr == "" || q.Datasource.UID != "${datasource}" {
					t.Errorf("%s: panel %q: query %q on %q", p, panel.Title, q.Expr, q.Datasource.UID)
				}
				for _, m := range varRE.FindAllStringSubmatch(q.Expr, -1) {
					if !vars[m[1]] {
						t.Errorf("%s: panel %q uses $%s, which is no variable", p, panel.Title, m[1])
					}
				}
			}
		}
		t.Logf("%s: %d panels, %d queries", p, len(d.Panels), queries)
	}
}
