package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
)

// TestEndToEndGenericXDP: node.xdp_mode generic forwards as native does, and lbd status says
// which mode runs.
func TestEndToEndGenericXDP(t *testing.T) {
	cfg := strings.Replace(string(configs.Demo), "node:\n", "node:\n  xdp_mode: generic\n", 1)
	s := mustSandbox(t, []byte(cfg), 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tl := s.Requests(ctx, 150, 6)
	if tl.Failures != 0 || len(tl.By) != 3 {
		t.Fatalf("%d failures (%v), served by %v", tl.Failures, tl.Errors, tl.By)
	}
	st, err := s.LBStatus(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.XDPMode != "generic" || st.XDPModeNote != "" || st.Verdicts["tx"].Packets < 3*150 {
		t.Fatalf("status: xdp mode %q (%q), tx %d", st.XDPMode, st.XDPModeNote, st.Verdicts["tx"].Packets)
	}
	t.Logf("generic XDP: 150 connections served by %v, xdp_lb sent %d packets", tl.By, st.Verdicts["tx"].Packets)
}

// TestEndToEndEncapSourcePrefix: with node.encap_source_prefix the LB sends each flow from
// an outer source inside the prefix, and backends that accept only the prefix
// (--lb-sources) serve every connection.
func TestEndToEndEncapSourcePrefix(t *testing.T) {
	cfg := strings.Replace(string(configs.Demo), "node:\n", "node:\n  encap_source_prefix: 198.18.128.0/24\n", 1)
	// the backends accept the prefix alone, not the LB node's own address
	s := mustSandboxOpts(t, sandboxOptions{config: []byte(cfg), lbs: 1, backends: 3, lbSources: []string{"198.18.128.0/24"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tl := s.Requests(ctx, 150, 6)
	if tl.Failures != 0 || len(tl.By) != 3 {
		t.Fatalf("%d failures (%v), served by %v", tl.Failures, tl.Errors, tl.By)
	}
	var refused uint64
	for i := range s.fleet.Backends {
		st, err := s.BackendHostStats(i)
		if err != nil {
			t.Fatal(err)
		}
		refused += st.Counters["refused_source"].Packets
	}
	if refused != 0 {
		t.Fatalf("backends refused %d packets from the prefix", refused)
	}
}
