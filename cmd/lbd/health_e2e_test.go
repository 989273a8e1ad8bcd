package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestDeadBackendLeavesTheRingAndReturns(t *testing.T) {
	s := mustSandbox(t, configs.Demo, 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := s.cfg.VIPs[0].Health
	victim := s.fleet.Backends[1]

	if err := s.StopServer(victim.Name); err != nil {
		t.Fatal(err)
	}
	bound := h.Interval*time.Duration(h.Fall) + time.Second
	took, err := s.WaitBackend(ctx, 0, victim.Addr, "down", 3*bound)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backend %s out of the ring %v after its service stopped (bound %v)", victim.Name, took, bound)
	if took > bound {
		t.Errorf("took %v to leave the ring, want <= interval × fall + 1s = %v", took, bound)
	}
	tl := s.Requests(ctx, 100, 4)
	if tl.Failures != 0 || tl.By[victim.Name] != 0 {
		t.Fatalf("after removal: %d failures (%v), %d requests reached %s", tl.Failures, tl.Errors, tl.By[victim.Name], victim.Name)
	}
	if !strings.Contains(s.lbProcs[0].Output(), `msg="backend down" vip=web backend=`+victim.Addr.String()) {
		t.Errorf("the LB did not log the state change:\n%s", s.lbProcs[0].Output())
	}
	g, err := s.LBMetrics(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := `# HELP lbd_backend_up 1 unless the backend is down in this node's rings: the health verdict (the cluster's, or this node's alone) has it down, or its next hop did not resolve.
# TYPE lbd_backend_up gauge
lbd_backend_up{backend="198.18.0.11",vip="web"} 1
lbd_backend_up{backend="198.18.0.12",vip="web"} 0
lbd_backend_up{backend="198.18.0.13",vip="web"} 1
# HELP lbd_backend_verdict_transitions_total Changes of the health verdict on a backend of a VIP, by the state entered: down takes it out of this node's rings, up puts it back. The verdict is the cluster's quorum of the LB nodes' probes, or this node's own probes when it is alone.
# TYPE lbd_backend_verdict_transitions_total counter
lbd_backend_verdict_transitions_total{backend="198.18.0.12",to="down",vip="web"} 1
`
	if err := testutil.GatherAndCompare(g, strings.NewReader(want), "lbd_backend_up", "lbd_backend_verdict_transitions_total"); err != nil {
		t.Errorf("metrics after the failover: %v", err)
	}

	if err := s.StartServer(victim.Name); err != nil {
		t.Fatal(err)
	}
	back := h.Interval*time.Duration(h.Rise) + time.Second
	took, err = s.WaitBackend(ctx, 0, victim.Addr, "active", 3*back)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backend %s back %v after its service restarted (bound %v)", victim.Name, took, back)
	tl = s.Requests(ctx, 150, 4)
	if tl.Failures != 0 || tl.By[victim.Name] == 0 {
		t.Fatalf("after return: %d failures, served by %v", tl.Failures, tl.By)
	}
}

func TestDrainKeepsEstablishedFlows(t *testing.T) {
	s := mustSandbox(t, configs.Demo, 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	drained := s.fleet.Backends[0]

	// open connections until one lands on the backend that will drain
	var k *keepAlive
	for i := 0; i < 50 && k == nil; i++ {
		conn, err := s.fleet.Client.DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", s.vip, s.vipPort))
		if err != nil {
			t.Fatal(err)
		}
		c := &keepAlive{conn: conn, r: bufio.NewReader(conn)}
		if c.get(t) == drained.Name {
			k = c
			defer conn.Close()
		} else {
			conn.Close()
		}
	}
	if k == nil {
		t.Fatalf("no connection landed on %s in 50 tries", drained.Name)
	}
	cfg := strings.Replace(string(configs.Demo), "- address: "+drained.Addr.String()+"\n        weight: 1", "- address: "+drained.Addr.String()+"\n        weight: 0", 1)
	if cfg == string(configs.Demo) {
		t.Fatal("demo config changed shape: cannot set a weight")
	}
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.lbProcs[0].WaitForLog("config reloaded", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitBackend(ctx, 0, drained.Addr, "draining", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	tl := s.Requests(ctx, 100, 4)
	if tl.Failures != 0 || tl.By[drained.Name] != 0 {
		t.Fatalf("new connections while %s drains: %d failures, served by %v", drained.Name, tl.Failures, tl.By)
	}
	for range 5 {
		if got := k.get(t); got != drained.Name {
			t.Fatalf("established connection moved from the draining %s to %s", drained.Name, got)
		}
	}
}
