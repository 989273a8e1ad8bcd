package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/internal/testbed"
	"github.com/lbdproj/lbd/internal/wait"
)

// demoScaleOut is the demo's second scene: three LB nodes in a cluster announce the VIP over
// BGP to BIRD on a router in front of them, which spreads flows over them by ECMP; one node
// is stopped (SIGTERM, as systemctl stop does) while the client keeps sending, the router's
// next hops shrink, and no request fails.
func demoScaleOut(ctx context.Context, e *env, exe string, n int) int {
	out := e.stdout
	g := sandboxBGP{holdTime: 9 * time.Second, announceDelay: time.Second, shutdownDrain: 2 * time.Second}
	fmt.Fprintf(out, "\nscale-out: client ─ router (BIRD 2, configs/bird.conf, AS %d) ─ 3 LB nodes (AS %d, one cluster) ─ 3 backends;\n",
		testbed.RouterASN, testbed.NodeASN)
	fmt.Fprintf(out, "each node announces the VIP over BGP once it can serve it (announce_delay %v), nothing is routed by hand\n", g.announceDelay)
	start := time.Now()
	s, err := raiseSandbox(sandboxOptions{exe: exe, config: configs.Demo, lbs: 3, backends: 3, prefix: "lbd-demo",
		cluster: true, bgp: &g})
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd demo: %v\n", err)
		return exitFailure
	}
	defer s.Close()
	var all, two []netip.Addr
	for i, h := range s.fleet.LBs {
		all = append(all, h.Addr)
		if i < 2 {
			two = append(two, h.Addr)
		}
	}
	fmt.Fprintf(out, "fleet %s up in %v: router %s, LB nodes %s\n", s.fleet.ID, s.startDur.Round(time.Millisecond), s.fleet.Router.Addr,
		joinAddrs(all))
	took, err := waitRouter(s, s.vip, all, 30*time.Second)
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd demo: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(out, "router: %s via %s, an ECMP route BIRD installed %v after the last node started serving\n",
		s.vip, joinAddrs(all), took.Round(100*time.Millisecond))
	fmt.Fprintf(out, "        (read from the router's kernel over netlink; %v from nothing to three next hops)\n\n", time.Since(start).Round(100*time.Millisecond))

	vip := netip.AddrPortFrom(s.vip, s.vipPort)
	before, err := nodePackets(ctx, s)
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd demo: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(out, "sending %d requests to %s, each a new TCP connection:\n", n, vip)
	t := s.RequestsTo(ctx, vip, n, 8)
	printTally(e, s, t, 0)
	after, err := nodePackets(ctx, s)
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd demo: %v\n", err)
		return exitFailure
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  LB NODE\tPACKETS FORWARDED\n")
	for i, h := range s.fleet.LBs {
		fmt.Fprintf(tw, "  %s\t%d\n", h.Name, after[i]-before[i])
	}
	tw.Flush()
	if t.Failures > 0 {
		fmt.Fprintf(e.stderr, "\nlbd demo: FAILED: %d of %d requests failed\n", t.Failures, n)
		return exitFailure
	}

	lb2 := s.lbProcs[2]
	fmt.Fprintf(out, "\nstopping lb2 (SIGTERM, as systemctl stop) while the client keeps opening connections:\n")
	ld := s.startLoad(ctx, vip, 4)
	if err := wait.Until(10*time.Second, 10*time.Millisecond, func() (bool, error) { return ld.total() >= 20, nil }); err != nil {
		ld.end()
		fmt.Fprintf(e.stderr, "lbd demo: the client: %v\n", err)
		return exitFailure
	}
	stopped := time.Now()
	if err := lb2.Signal(syscall.SIGTERM); err != nil {
		ld.end()
		fmt.Fprintf(e.stderr, "lbd demo: %v\n", err)
		return exitFailure
	}
	if _, err := waitRouter(s, s.vip, two, 10*time.Second); err != nil {
		ld.end()
		fmt.Fprintf(e.stderr, "lbd demo: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(out, "router: %s via %s %v after the signal: lb2 re-announced its route with GRACEFUL_SHUTDOWN (65535:0),\n",
		s.vip, joinAddrs(two), time.Since(stopped).Round(time.Millisecond))
	fmt.Fprintf(out, "        which BIRD's filter gives a lower preference, so the other nodes' routes win at once\n")
	err = wait.Until(g.shutdownDrain+15*time.Second, 20*time.Millisecond, func() (bool, error) { return lb2.Exited(), nil })
	tl := ld.end()
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd demo: lb2 did not stop: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(out, "lb2's log (xdp_lb kept forwarding from its pinned link all along):\n")
	for _, line := range strings.Split(lb2.Output(), "\n") {
		for _, m := range []string{`msg=stopping`, `msg="bgp drain`, `msg="bgp sessions closed"`, `msg="stopped;`} {
			if strings.Contains(line, m) {
				fmt.Fprintf(out, "  %s\n", line)
			}
		}
	}
	total := tl.Failures
	for _, c := range tl.By {
		total += c
	}
	fmt.Fprintf(out, "while lb2 drained and stopped (%v): %d requests, %d failed\n", time.Since(stopped).Round(100*time.Millisecond), total, tl.Failures)
	for _, err := range tl.Errors {
		fmt.Fprintf(out, "  error: %s\n", err)
	}

	st, err := s.LBStatus(ctx, 0)
	if err != nil || st.BGP == nil {
		fmt.Fprintf(e.stderr, "lbd demo: lb0 status: %v\n", err)
		return exitFailure
	}
	var b strings.Builder
	printBGP(&b, *st.BGP, time.Now())
	fmt.Fprintf(out, "\nlb0 (lbd status):\n")
	for _, line := range strings.Split(strings.Trim(b.String(), "\n"), "\n") {
		fmt.Fprintf(out, "  %s\n", line)
	}
	if tl.Failures > 0 {
		fmt.Fprintf(e.stderr, "\nlbd demo: FAILED: %d requests failed while lb2 stopped\n", tl.Failures)
		return exitFailure
	}
	return exitOK
}

// waitRouter waits until the router's route to vip has exactly want as next hops.
func waitRouter(s *sandbox, vip netip.Addr, want []netip.Addr, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var got []netip.Addr
	err := wait.Until(timeout, 5*time.Millisecond, func() (bool, error) {
		var err error
		got, err = s.fleet.NextHops(vip)
		return err == nil && slices.Equal(got, want), err
	})
	if err != nil {
		return 0, fmt.Errorf("router: %s via %v, want %v: %w", vip, got, want, err)
	}
	return time.Since(start), nil
}

// nodePackets is each LB node's count of packets sent to the first VIP's backends.
func nodePackets(ctx context.Context, s *sandbox) ([]uint64, error) {
	var out []uint64
	for i := range s.fleet.LBs {
		st, err := s.LBStatus(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("lb%d status: %w", i, err)
		}
		if len(st.VIPs) == 0 {
			return nil, fmt.Errorf("lb%d serves no VIP", i)
		}
		out = append(out, st.VIPs[0].Packets)
	}
	return out, nil
}

func joinAddrs(as []netip.Addr) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.String()
	}
	return strings.Join(parts, ", ")
}
