package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/lbdproj/lbd/pkg/config"
	"github.com/lbdproj/lbd/pkg/plan"
)

// FuzzPlan drives lbd plan's path with two arbitrary config files: whatever they hold, a
// plan is made without a panic for two files that validate, every moved fraction lies in
// [0, 1], a file against itself moves nothing, and the report prints as text and JSON.
// Configs with many backends or huge rings are skipped: they are slow to build, not wrong.
func FuzzPlan(f *testing.F) {
	var seeds [][]byte
	for _, name := range []string{"demo.yaml", "example.yaml"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "configs", name)); err == nil {
			seeds = append(seeds, b)
		}
	}
	small := []byte("node: {interface: eth0}\nvips:\n  - name: web\n    address: 198.18.0.10\n    port: 80\n    ring_size: 1009\n    backends:\n      - address: 198.18.0.11\n      - address: 198.18.0.12\n        weight: 3\n")
	seeds = append(seeds, small)
	for _, a := range seeds {
		for _, b := range seeds {
			f.Add(a, b)
		}
	}
	f.Fuzz(func(t *testing.T, oldYAML, newYAML []byte) {
		oldCfg, err1 := config.Parse("old.yaml", oldYAML)
		newCfg, err2 := config.Parse("new.yaml", newYAML)
		if err1 != nil || err2 != nil || tooBig(oldCfg) || tooBig(newCfg) {
			return
		}
		oldSpecs, newSpecs := planSpecs(oldCfg), planSpecs(newCfg)
		r := plan.Diff(oldSpecs, newSpecs)
		for _, v := range r.VIPs {
			if v.MovedFraction < 0 || v.MovedFraction > 1 {
				t.Fatalf("vip %s: moved fraction %v", v.Name, v.MovedFraction)
			}
		}
		for _, v := range plan.Diff(newSpecs, newSpecs).VIPs {
			if v.MovedFraction != 0 || len(v.Added)+len(v.Removed)+len(v.Reweighted) != 0 {
				t.Fatalf("a config against itself: vip %s %+v", v.Name, v)
			}
		}
		if err := r.WriteText(io.Discard); err != nil {
			t.Fatalf("text: %v", err)
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatalf("json: %v", err)
		}
	})
}

func tooBig(c *config.Config) bool {
	n := 0
	for _, v := range c.VIPs {
		n += len(v.Backends)
		if v.RingSize > 131071 {
			return true
		}
	}
	return n > 300
}
