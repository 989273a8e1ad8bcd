package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hundred writes a config with one VIP of 100 equal backends, less those in skip.
func hundred(t *testing.T, dir, name, alg string, skip int) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "node:\n  interface: eth0\nvips:\n  - name: big\n    address: 198.18.0.10\n    port: 80\n")
	if alg != "" {
		fmt.Fprintf(&b, "    algorithm: %s\n", alg)
	}
	b.WriteString("    backends:\n")
	for i := range 100 {
		if i != skip {
			fmt.Fprintf(&b, "      - address: 198.18.1.%d\n", i+1)
		}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runPlan(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := newEnv()
	e.stdout, e.stderr = &stdout, &stderr
	code := run(context.Background(), e, append([]string{"plan"}, args...))
	return code, stdout.String(), stderr.String()
}

func TestPlanOneOfHundredRemoved(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		alg      string
		min, max float64 // bounds on moved_fraction; the minimum possible is 1/100
	}{
		{"maglev", 0.01, 0.02},            // canonical Maglev measured 1.57%
		{"", 0.01, 0.0145},                // the default, rendezvous: measured 1.29%
		{"rendezvous-slack", 0.01, 0.012}, // ≤ 1.2 × the minimum: measured 1.16%
	} {
		t.Run("alg="+c.alg, func(t *testing.T) {
			old := hundred(t, dir, c.alg+"-old.yaml", c.alg, -1)
			new := hundred(t, dir, c.alg+"-new.yaml", c.alg, 37)
			code, out, errOut := runPlan(t, "--json", old, new)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var r struct {
				VIPs []struct {
					Name          string  `json:"name"`
					MovedFraction float64 `json:"moved_fraction"`
					Removed       []struct {
						Key string `json:"key"`
					} `json:"removed"`
				} `json:"vips"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if len(r.VIPs) != 1 || r.VIPs[0].Name != "big" || len(r.VIPs[0].Removed) != 1 || r.VIPs[0].Removed[0].Key != "198.18.1.38" {
				t.Fatalf("report %s", out)
			}
			if f := r.VIPs[0].MovedFraction; f < c.min || f > c.max {
				t.Errorf("moved_fraction %.4f outside [%.3f, %.3f]", f, c.min, c.max)
			}
			code, text, _ := runPlan(t, old, new)
			if code != exitOK || !strings.Contains(text, "vip big:") || !strings.Contains(text, "198.18.1.38") {
				t.Errorf("text report (exit %d):\n%s", code, text)
			}
		})
	}
}

func TestPlanInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	good := hundred(t, dir, "good.yaml", "", -1)
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("node:\n  interface: eth0\nvips:\n  - name: web\n    adress: 198.18.0.10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runPlan(t, good, bad)
	if code != exitFailure {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(errOut, "bad.yaml:5:5: vips[0].adress") {
		t.Fatalf("error does not name the place:\n%s", errOut)
	}
}

// A VIP without ring_size whose backends outgrow 65537 slots gets the next size, and lbd plan
// says so.
func TestPlanShowsRingSizeFollowingBackends(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		var b strings.Builder
		b.WriteString("node:\n  interface: eth0\nvips:\n  - name: big\n    address: 198.18.0.10\n    port: 80\n    backends:\n")
		for i := range n {
			fmt.Fprintf(&b, "      - address: 198.19.%d.%d\n", i/250, i%250+1)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	old, new := write("old.yaml", 600), write("new.yaml", 700)
	code, out, errOut := runPlan(t, old, new)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "ring size 65537 -> 131071") || !strings.Contains(out, "+ 198.19.2.101 (weight 1)") {
		t.Errorf("plan does not show the ring growing with the backends:\n%s", out)
	}
	var stdout, stderr bytes.Buffer
	e := newEnv()
	e.stdout, e.stderr = &stdout, &stderr
	if code := run(context.Background(), e, []string{"validate", new}); code != exitOK {
		t.Fatalf("validate: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "700       131071 (auto)") {
		t.Errorf("validate does not show the chosen ring size:\n%s", stdout.String())
	}
}
