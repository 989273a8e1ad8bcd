package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
)

// TestUnresolvedNextHopIsRetried: a backend whose link is down when lbd starts cannot be
// resolved (no ARP answer) and is served as down; once it answers, lbd resolves it in the
// background and puts it back in the ring without a reload.
func TestUnresolvedNextHopIsRetried(t *testing.T) {
	setLink := func(s *sandbox, state string) error {
		h := s.fleet.Backends[2]
		if out, err := h.Command(context.Background(), "ip", "link", "set", h.Link, state).CombinedOutput(); err != nil {
			return fmt.Errorf("ip link set %s %s: %v: %s", h.Link, state, err, out)
		}
		return nil
	}
	s := mustSandboxOpts(t, sandboxOptions{config: configs.Demo, lbs: 1, backends: 3,
		beforeLB: func(s *sandbox) error { return setLink(s, "down") }})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	late := s.fleet.Backends[2]

	st, err := s.LBStatus(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b := st.VIPs[0].Backends[2]; b.State != "down" || b.Error == "" {
		t.Fatalf("backend with its link down at start: %+v, want down with the resolution error", b)
	}
	if tl := s.Requests(ctx, 60, 4); tl.Failures != 0 || tl.By[late.Name] != 0 {
		t.Fatalf("while unresolved: %d failures (%v), served by %v", tl.Failures, tl.Errors, tl.By)
	}
	if err := setLink(s, "up"); err != nil {
		t.Fatal(err)
	}
	took, err := s.WaitBackend(ctx, 0, late.Addr, "active", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s resolved and active %v after its link came up", late.Name, took)
	if tl := s.Requests(ctx, 90, 4); tl.Failures != 0 || tl.By[late.Name] == 0 {
		t.Fatalf("after resolution: %d failures (%v), served by %v", tl.Failures, tl.Errors, tl.By)
	}
}
