package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/internal/daemon"
	"github.com/lbdproj/lbd/internal/wait"
)

// TestProbesThroughTheTunnel: probes go to VIP:port encapsulated to one backend, so a
// backend whose decap is gone is taken out although its service answers on its own address.
func TestProbesThroughTheTunnel(t *testing.T) {
	cfg := strings.Replace(string(configs.Demo), "      type: tcp", "      type: http\n      path: /\n      through_tunnel: true", 1)
	if cfg == string(configs.Demo) {
		t.Fatal("demo config changed shape: cannot set through_tunnel")
	}
	s := mustSandbox(t, []byte(cfg), 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// every backend answers the probes through the tunnel: all stay active, and the LB
	// counts encapsulated probes
	var st daemon.Status
	probed := 0
	err := wait.Until(5*time.Second, 50*time.Millisecond, func() (bool, error) {
		var err error
		if st, err = s.LBStatus(ctx, 0); err != nil {
			return true, err
		}
		probed = 0
		for _, b := range st.VIPs[0].Backends {
			if b.Probe == "up" {
				probed++
			}
		}
		return probed == 3 && st.Verdicts["probe_tx"].Packets > 0, nil
	})
	if errors.Is(err, wait.ErrTimeout) {
		t.Fatalf("probes through the tunnel: %d backends up, probe_tx %d: %+v", probed, st.Verdicts["probe_tx"].Packets, st.VIPs[0].Backends)
	}
	if err != nil {
		t.Fatal(err)
	}

	// be1 loses its decap (lbd backend stopped, its programs detached): its HTTP service still
	// answers on 198.18.0.12:80, but clients' tunnelled packets can no longer reach it
	victim := s.fleet.Backends[1]
	_ = s.beProcs[1].Stop()
	if out, err := victim.Command(ctx, s.exe, "detach", "--pin-dir", s.pinDir(victim)).CombinedOutput(); err != nil {
		t.Fatalf("lbd detach: %v: %s", err, out)
	}
	if _, err := s.WaitBackend(ctx, 0, victim.Addr, "down", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if tl := s.Requests(ctx, 90, 6); tl.Failures != 0 || tl.By[victim.Name] != 0 {
		t.Fatalf("after be1 lost its decap: %d failures (%v), served by %v", tl.Failures, tl.Errors, tl.By)
	}
}
