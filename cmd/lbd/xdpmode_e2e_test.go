package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/internal/testbed"
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

// TestEndToEndBehindAFilter: an operator's XDP filter on the LB node's interface drops one
// source address and tail-calls xdp_lb (node.xdp_chain) with the rest: that source's
// connections fail, every other client's are balanced, and restarting lbd leaves the
// filter in place (lbd only replaces its own slot).
func TestEndToEndBehindAFilter(t *testing.T) {
	blocked := netip.MustParseAddr("198.18.0.99")
	var filter *testbed.XDPFilter
	var pin string
	cfg := []byte(strings.Replace(string(configs.Demo), "node:\n", "node:\n  xdp_chain:\n    prog_array: /PIN\n    slot: 0\n", 1))
	s := mustSandboxOpts(t, sandboxOptions{lbs: 1, backends: 3, config: cfg, beforeLB: func(s *sandbox) error {
		pin = filepath.Join(s.fleet.PinDir, "filter_chain")
		var err error
		if filter, err = s.fleet.LBs[0].AttachXDPFilter(blocked, pin); err != nil {
			return err
		}
		// the chain's pin is only known now: point the config at it
		b, err := os.ReadFile(s.lbCfgs[0])
		if err != nil {
			return err
		}
		return os.WriteFile(s.lbCfgs[0], []byte(strings.Replace(string(b), "/PIN", pin, 1)), 0o600)
	}})
	t.Cleanup(func() { _ = filter.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// the blocked client: a second address on the client's interface
	if err := s.fleet.Client.AddAddr(blocked); err != nil {
		t.Fatal(err)
	}
	blockedDial := func() error {
		d := s.fleet.Client.Dialer()
		d.LocalAddr = &net.TCPAddr{IP: blocked.AsSlice()}
		d.Timeout = time.Second
		c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", s.vip, s.vipPort))
		if err == nil {
			c.Close()
		}
		return err
	}
	// the control: the second address works, straight to a backend
	d := s.fleet.Client.Dialer()
	d.LocalAddr = &net.TCPAddr{IP: blocked.AsSlice()}
	if c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", s.fleet.Backends[0].Addr, s.vipPort)); err != nil {
		t.Fatalf("from %s straight to a backend: %v", blocked, err)
	} else {
		c.Close()
	}
	filterID, err := filter.ProgramID()
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		tl := s.Requests(ctx, 90, 6)
		if tl.Failures != 0 || len(tl.By) != 3 {
			t.Fatalf("round %d: %d failures (%v), served by %v", round, tl.Failures, tl.Errors, tl.By)
		}
		if err := blockedDial(); err == nil {
			t.Fatalf("round %d: a connection from %s got through the filter", round, blocked)
		}
		st, err := s.LBStatus(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if st.XDPMode != "chained" {
			t.Fatalf("round %d: xdp mode %q, want chained", round, st.XDPMode)
		}
		id, err := s.fleet.LBs[0].XDPProgramID()
		if err != nil || id != uint32(filterID) {
			t.Fatalf("round %d: the interface runs program %d (%v), the filter is %d", round, id, err, filterID)
		}
		t.Logf("round %d: 90 connections balanced over %v, %s blocked by the filter", round, tl.By, blocked)
		if round == 0 { // restart lbd: its slot gets the new program, the filter stays
			_ = s.lbProcs[0].Stop()
			if err := s.StartLB(0); err != nil {
				t.Fatal(err)
			}
		}
	}
}
