package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/lbdproj/lbd/pkg/backends"
	"github.com/lbdproj/lbd/pkg/config"
	"github.com/lbdproj/lbd/pkg/consistenthash"
	"github.com/lbdproj/lbd/pkg/plan"
)

// cmdPlan shows what changing from one config to another does to each VIP's flows,
// computed with the real ring code. It changes nothing.
func cmdPlan(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "plan", "OLD.yaml NEW.yaml [--json]")
	asJSON := fs.Bool("json", false, `print {"vips":[{"name":…,"moved_fraction":…,…}]}`)
	pos, ok := parseFlags(fs, args)
	if !ok {
		return exitUsage
	}
	if len(pos) != 2 {
		fs.Usage()
		return exitUsage
	}
	var specs [2][]plan.VIPSpec
	for i, path := range pos {
		cfg, err := config.Load(path)
		if err != nil {
			fmt.Fprintln(e.stderr, err)
			return exitFailure
		}
		specs[i] = planSpecs(cfg)
	}
	r := plan.Diff(specs[0], specs[1])
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return exitFailure
		}
		return exitOK
	}
	if err := r.WriteText(e.stdout); err != nil {
		return exitFailure
	}
	return exitOK
}

// planSpecs is each VIP's ring input as the daemon would build it with every backend up. An
// empty algorithm is the default: plan.Diff picks it as the daemon does (Algorithm.OrDefault).
func planSpecs(cfg *config.Config) []plan.VIPSpec {
	out := make([]plan.VIPSpec, 0, len(cfg.VIPs))
	for _, v := range cfg.VIPs {
		s := plan.VIPSpec{Name: v.Name, Algorithm: v.Algorithm, Size: v.RingSize}
		for _, b := range v.Backends {
			s.Members = append(s.Members, consistenthash.Member{Key: backends.RingKey(b.Address), Weight: b.Weight})
		}
		out = append(out, s)
	}
	return out
}
