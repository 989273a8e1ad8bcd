package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/internal/testbed"
)

// cmdDemo raises a sandbox fleet (client, one LB, three backends) in network namespaces,
// runs the real lbd on it with the embedded configs/demo.yaml, sends 300 requests and shows
// where they went, then fails a backend over; then a second fleet of three LB nodes behind a
// BIRD router for the scale-out scene (demoScaleOut).
func cmdDemo(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "demo", "[--requests N]")
	n := fs.Int("requests", 300, "requests to send (each a new TCP connection)")
	if _, ok := parseFlags(fs, args); !ok {
		return exitUsage
	}
	exe, err := e.exe()
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd demo: %v\n", err)
		return exitFailure
	}
	out := e.stdout
	fmt.Fprintf(out, "lbd demo: client, 1 LB node, 3 backends in network namespaces; config %s (embedded)\n", configs.DemoName)
	s, err := raiseSandbox(sandboxOptions{exe: exe, config: configs.Demo, lbs: 1, backends: 3, prefix: "lbd-demo"})
	if errors.Is(err, testbed.ErrNotRoot) {
		fmt.Fprintln(e.stderr, "lbd demo: needs root (network namespaces, XDP): run it with sudo, or `make demo` as root")
		return exitFailure
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd demo: %v\n", err)
		return exitFailure
	}
	defer s.Close()
	lb := s.fleet.LBs[0]
	fmt.Fprintf(out, "fleet %s up in %v: client %s, lb %s, backends", s.fleet.ID, s.startDur.Round(time.Millisecond), s.fleet.Client.Addr, lb.Addr)
	for _, b := range s.fleet.Backends {
		fmt.Fprintf(out, " %s=%s", b.Name, b.Addr)
	}
	fmt.Fprintf(out, "\nVIP %s:%d via lb: sending %d requests, each a new TCP connection\n\n", s.vip, s.vipPort, *n)

	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	t := s.Requests(ctx, *n, 8)
	printTally(e, s, t, time.Since(start))

	st, err := s.LBStatus(ctx, 0)
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd demo: lb status: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(out, "\nLB node (lbd status):\n")
	printStatus(out, st)
	fmt.Fprintf(out, "\nbackends (replies go straight to the client, source restored to the VIP):\n")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  BACKEND\tDECAPSULATED\tREPLIES RESTORED\n")
	for i, h := range s.fleet.Backends {
		bs, err := s.BackendHostStats(i)
		if err != nil {
			fmt.Fprintf(e.stderr, "lbd demo: backend %s: %v\n", h.Name, err)
			return exitFailure
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\n", h.Name, bs.Counters["decap"].Packets, bs.Counters["restored"].Packets)
	}
	tw.Flush()

	if t.Failures > 0 || len(t.By) != len(s.fleet.Backends) {
		fmt.Fprintf(e.stderr, "\nlbd demo: FAILED: %d failures, %d of %d backends served\n", t.Failures, len(t.By), len(s.fleet.Backends))
		return exitFailure
	}
	fmt.Fprintf(out, "\nall %d requests answered, every backend served\n", *n)

	// failover: one backend's service stops; its host (and decap) stay up
	victim := s.fleet.Backends[1]
	h := s.cfg.VIPs[0].Health
	fmt.Fprintf(out, "\nfailover: stopping %s's HTTP service (health: %s, interval %v, fall %d, rise %d)\n",
		victim.Name, h.Type, h.Interval, h.Fall, h.Rise)
	if err := s.StopServer(victim.Name); err != nil {
		fmt.Fprintf(e.stderr, "lbd demo: %v\n", err)
		return exitFailure
	}
	took, err := s.WaitBackend(ctx, 0, victim.Addr, "down", 10*time.Second)
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd demo: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(out, "lb0 took %s out of its ring %v after the service stopped; the LB's log says:\n", victim.Name, took.Round(10*time.Millisecond))
	for _, line := range strings.Split(s.lbProcs[0].Output(), "\n") {
		if strings.Contains(line, "msg=\"backend down\"") {
			fmt.Fprintf(out, "  %s\n", line)
		}
	}
	fmt.Fprintf(out, "sending %d more requests:\n\n", *n)
	t2 := s.Requests(ctx, *n, 8)
	printTally(e, s, t2, 0)
	if t2.Failures > 0 || t2.By[victim.Name] != 0 {
		fmt.Fprintf(e.stderr, "\nlbd demo: FAILED: after failover %d failures, %d requests still reached %s\n", t2.Failures, t2.By[victim.Name], victim.Name)
		return exitFailure
	}
	if err := s.StartServer(victim.Name); err != nil {
		fmt.Fprintf(e.stderr, "lbd demo: %v\n", err)
		return exitFailure
	}
	took, err = s.WaitBackend(ctx, 0, victim.Addr, "active", 10*time.Second)
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd demo: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(out, "\n%s's service restarted: back in the ring after %v (rise %d)\n", victim.Name, took.Round(10*time.Millisecond), h.Rise)
	s.Close()

	if code := demoScaleOut(ctx, e, exe, *n); code != exitOK {
		return code
	}
	fmt.Fprintf(out, "\ndemo done: tearing the fleet down\n")
	return exitOK
}

func printTally(e *env, s *sandbox, t tally, took time.Duration) {
	total := t.Failures
	for _, c := range t.By {
		total += c
	}
	names := make([]string, 0, len(s.fleet.Backends))
	for _, h := range s.fleet.Backends {
		names = append(names, h.Name)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  BACKEND\tREQUESTS\tSHARE\n")
	for _, name := range names {
		fmt.Fprintf(tw, "  %s\t%d\t%.1f%%\n", name, t.By[name], 100*float64(t.By[name])/float64(max(total, 1)))
	}
	fmt.Fprintf(tw, "  failed\t%d\t\n", t.Failures)
	tw.Flush()
	if took > 0 {
		fmt.Fprintf(e.stdout, "  (%d requests in %v)\n", total, took.Round(time.Millisecond))
	}
	for _, err := range t.Errors {
		fmt.Fprintf(e.stdout, "  error: %s\n", err)
	}
}
