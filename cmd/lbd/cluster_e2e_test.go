package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/internal/daemon"
	"github.com/lbdproj/lbd/internal/wait"
)

// mustCluster raises 3 LB nodes in one cluster behind a router with ECMP, and 3 backends.
func mustCluster(t *testing.T) *sandbox {
	t.Helper()
	s := mustSandboxOpts(t, sandboxOptions{config: configs.Demo, lbs: 3, backends: 3, cluster: true, router: true})
	// wait until every node sees the other two
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range s.fleet.LBs {
		if err := s.waitMembers(ctx, i, 3); err != nil {
			t.Fatal(err)
		}
	}
	// and until each has every member's ring fingerprint, equal to its own
	for i := range s.fleet.LBs {
		if err := wait.Until(20*time.Second, 50*time.Millisecond, func() (bool, error) {
			st, err := s.LBStatus(ctx, i)
			if err != nil || st.Cluster == nil {
				return false, err
			}
			for _, m := range st.Cluster.Members {
				if m.Fingerprint == "" {
					return false, nil
				}
			}
			return st.Cluster.FingerprintsAgree, nil
		}); err != nil {
			t.Fatalf("lb%d: rings do not agree: %v", i, err)
		}
	}
	return s
}

// waitMembers polls LB node i until it counts n live members with its own config.
func (s *sandbox) waitMembers(ctx context.Context, i, n int) error {
	last := -1
	for ctx.Err() == nil {
		if st, err := s.LBStatus(ctx, i); err == nil && st.Cluster != nil {
			live := 0
			for _, m := range st.Cluster.Members {
				if m.State == "alive" && m.SameConfig {
					live++
				}
			}
			if live == n {
				return nil
			}
			last = live
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("lb%d: %d live members, want %d", i, last, n)
}

// waitAll waits until backend addr is in state on every listed LB node; it returns the time
// until the last one got there.
func (s *sandbox) waitAll(ctx context.Context, nodes []int, addr netip.Addr, state string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for j, i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[j] = s.WaitBackend(ctx, i, addr, state, timeout)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

func TestClusterDeadBackendLeavesEveryRing(t *testing.T) {
	s := mustCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := s.cfg.VIPs[0].Health
	victim := s.fleet.Backends[2]

	if tl := s.Requests(ctx, 120, 6); tl.Failures != 0 || len(tl.By) != 3 {
		t.Fatalf("before: %d failures, served by %v", tl.Failures, tl.By)
	}
	if err := s.StopServer(victim.Name); err != nil {
		t.Fatal(err)
	}
	bound := h.Interval*time.Duration(h.Fall) + time.Second
	took, err := s.waitAll(ctx, []int{0, 1, 2}, victim.Addr, "down", 3*bound)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backend %s out of every node's ring %v after its service stopped (bound %v)", victim.Name, took, bound)
	if took > bound {
		t.Errorf("took %v, want <= interval × fall + 1s = %v", took, bound)
	}
	tl := s.Requests(ctx, 150, 6)
	if tl.Failures != 0 || tl.By[victim.Name] != 0 {
		t.Fatalf("after removal: %d failures (%v), served by %v", tl.Failures, tl.Errors, tl.By)
	}
	s.assertRingsAgree(ctx, t)

	if err := s.StartServer(victim.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := s.waitAll(ctx, []int{0, 1, 2}, victim.Addr, "active", 3*(h.Interval*time.Duration(h.Rise)+time.Second)); err != nil {
		t.Fatal(err)
	}
	s.assertRingsAgree(ctx, t)
}

// assertRingsAgree checks every node serves the same ring and says the fingerprints agree.
func (s *sandbox) assertRingsAgree(ctx context.Context, t *testing.T) {
	t.Helper()
	var fps map[string]bool
	var agree bool
	var views []string
	err := wait.Until(5*time.Second, 50*time.Millisecond, func() (bool, error) {
		fps, agree, views = map[string]bool{}, true, nil
		for i := range s.fleet.LBs {
			st, err := s.LBStatus(ctx, i)
			if err != nil {
				return true, err
			}
			fps[st.VIPs[0].Fingerprint] = true
			agree = agree && st.Cluster != nil && st.Cluster.FingerprintsAgree
			if st.Cluster != nil {
				views = append(views, fmt.Sprintf("lb%d (own %s): %+v", i, st.Cluster.Fingerprint, st.Cluster.Members))
			}
		}
		return len(fps) == 1 && agree, nil
	})
	if errors.Is(err, wait.ErrTimeout) {
		t.Fatalf("rings differ between nodes: fingerprints %v, all say agree: %v\n%s", fps, agree, strings.Join(views, "\n"))
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestClusterMajorityOutvotesOneBlockedNode(t *testing.T) {
	s := mustCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	blocked := s.fleet.Backends[0]
	lb0 := s.fleet.LBs[0]
	// lb0's own probes to the backend are dropped; traffic it forwards (XDP) is not
	rule := fmt.Sprintf("table inet lbdtest {\n  chain out {\n    type filter hook output priority 0;\n    ip daddr %s tcp dport %d drop\n  }\n}\n",
		blocked.Addr, s.vipPort)
	cmd := lb0.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rule)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	// wait until lb0's own probes see it down
	err := wait.Until(10*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := s.LBStatus(ctx, 0)
		if err != nil {
			return true, err
		}
		return probeOf(st.VIPs[0].Backends, blocked.Addr) == "down", nil
	})
	if errors.Is(err, wait.ErrTimeout) {
		t.Fatalf("lb0's probes never saw %s down", blocked.Addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	// for three more fall windows, every node keeps it in the ring and agrees: a check that
	// must hold throughout, sampled every 100 ms (pacing, not waiting for a condition)
	h := s.cfg.VIPs[0].Health
	until := time.Now().Add(3 * h.Interval * time.Duration(h.Fall))
	sample := time.NewTicker(100 * time.Millisecond)
	defer sample.Stop()
	for time.Now().Before(until) {
		for i := range s.fleet.LBs {
			st, err := s.LBStatus(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range st.VIPs[0].Backends {
				if b.Address == blocked.Addr.String() && b.State != "active" {
					t.Fatalf("lb%d took %s out of its ring (%s) though 2 of 3 nodes see it up", i, b.Address, b.State)
				}
			}
		}
		<-sample.C
	}
	for i, p := range s.lbProcs {
		if strings.Contains(p.Output(), `msg="backend down" vip=web`) {
			t.Errorf("lb%d flapped the backend:\n%s", i, p.Output())
		}
	}
	s.assertRingsAgree(ctx, t)
	// lbd status shows the disagreement and the verdict: lb0 sees it down, the others up
	st, err := s.LBStatus(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	printStatus(&out, st)
	want := fmt.Sprintf("%s  active  up     lb0:down lb1:up lb2:up", blocked.Addr)
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "all LB nodes serve the same rings") {
		t.Errorf("lbd status on lb1 does not show %q and ring agreement:\n%s", want, out.String())
	}
	if tl := s.Requests(ctx, 90, 6); tl.Failures != 0 || tl.By[blocked.Name] == 0 {
		t.Fatalf("%d failures, served by %v", tl.Failures, tl.By)
	}
}

func probeOf(bs []daemon.BackendStatus, addr netip.Addr) string {
	for _, b := range bs {
		if b.Address == addr.String() {
			return b.Probe
		}
	}
	return ""
}

// dialFrom connects from the client to the VIP from a fixed source port and returns the
// backend's name; the connection is closed with RST, so the port is free again at once.
func (s *sandbox) dialFrom(ctx context.Context, t *testing.T, port int) string {
	t.Helper()
	d := s.fleet.Client.Dialer()
	d.LocalAddr = &net.TCPAddr{IP: s.fleet.Client.Addr.AsSlice(), Port: port}
	d.Control = func(network, address string, c syscall.RawConn) error {
		var err error
		_ = c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
		return err
	}
	conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", s.vip, s.vipPort))
	if err != nil {
		t.Fatalf("dial from port %d: %v", port, err)
	}
	defer func() {
		_ = conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}()
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\n\r\n")
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	buf := make([]byte, 512)
	for {
		n, err := conn.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	body := b.String()
	if i := strings.Index(body, "\r\n\r\n"); i >= 0 {
		return strings.TrimSpace(body[i+4:])
	}
	t.Fatalf("no HTTP answer from port %d: %q", port, body)
	return ""
}

func TestClusterSameFlowSameBackendOnEveryNode(t *testing.T) {
	s := mustCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vip := netip.PrefixFrom(s.vip, 32)
	for _, port := range []int{41001, 41002, 41003, 41004, 41005, 41006} {
		seen := map[string]string{}
		for _, lb := range s.fleet.LBs {
			if err := s.fleet.RouteVIP(vip, lb); err != nil {
				t.Fatal(err)
			}
			seen[lb.Name] = s.dialFrom(ctx, t, port)
		}
		if seen["lb0"] != seen["lb1"] || seen["lb1"] != seen["lb2"] {
			t.Errorf("flow from port %d: backends by LB node %v", port, seen)
		}
	}
}

func TestClusterNodeLeavesTheRestCarryOn(t *testing.T) {
	s := mustCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.lbProcs[2].Stop(); err != nil && !strings.Contains(err.Error(), "terminated") {
		t.Logf("stop lb2: %v", err)
	}
	if err := s.fleet.RouteVIP(netip.PrefixFrom(s.vip, 32), s.fleet.LBs[0], s.fleet.LBs[1]); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.waitMembers(ctx, i, 2); err != nil {
			t.Fatal(err)
		}
	}
	// with lb2 gone, the two left still decide: a dead backend leaves both rings
	h := s.cfg.VIPs[0].Health
	victim := s.fleet.Backends[1]
	if err := s.StopServer(victim.Name); err != nil {
		t.Fatal(err)
	}
	bound := h.Interval*time.Duration(h.Fall) + time.Second
	took, err := s.waitAll(ctx, []int{0, 1}, victim.Addr, "down", 3*bound)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with lb2 gone, %s left both remaining rings in %v", victim.Name, took)
	if tl := s.Requests(ctx, 90, 6); tl.Failures != 0 || tl.By[victim.Name] != 0 {
		t.Fatalf("%d failures (%v), served by %v", tl.Failures, tl.Errors, tl.By)
	}
}
