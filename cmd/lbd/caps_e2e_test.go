package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/internal/testbed"
	"golang.org/x/sys/unix"
)

// unitCaps is the CapabilityBoundingSet of a unit in configs/systemd, e.g. ["bpf", "net_admin"].
func unitCaps(t *testing.T, unit string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", "systemd", unit))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^CapabilityBoundingSet=(.+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s has no CapabilityBoundingSet", unit)
	}
	var caps []string
	for _, c := range strings.Fields(string(m[1])) {
		caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	return caps
}

// capBit is a capability's bit in /proc/PID/status.
var capBit = map[string]uint{"bpf": unix.CAP_BPF, "net_admin": unix.CAP_NET_ADMIN, "perfmon": unix.CAP_PERFMON,
	"sys_admin": unix.CAP_SYS_ADMIN, "net_raw": unix.CAP_NET_RAW}

// setpriv is the command that runs a program as root with only caps, as systemd does with
// CapabilityBoundingSet for a root service: the bounding set limits what exec grants.
func setpriv(caps []string) []string {
	set := "-all"
	for _, c := range caps {
		set += ",+" + c
	}
	return []string{"setpriv", "--bounding-set=" + set, "--inh-caps=-all"}
}

// procCaps reads a process's effective and bounding capability sets.
func procCaps(t *testing.T, pid int) (eff, bnd uint64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":\t")
		switch k {
		case "CapEff":
			eff, _ = strconv.ParseUint(v, 16, 64)
		case "CapBnd":
			bnd, _ = strconv.ParseUint(v, 16, 64)
		}
	}
	return eff, bnd
}

// TestRunsWithUnitCapabilities runs lbd run (with probes through the tunnel and a cluster
// section: marks, policy routing, gossip) and lbd backend with only the capabilities their
// systemd units grant, and checks they serve, restart onto their pins and reload. Then it
// starts each with one of those capabilities less and sees it refuse to start: the set is
// what lbd needs, no more.
func TestRunsWithUnitCapabilities(t *testing.T) {
	if _, err := os.Stat("/usr/bin/setpriv"); err != nil {
		t.Skip("skipping: setpriv (util-linux) is not installed")
	}
	caps := unitCaps(t, "lbd.service")
	if be := unitCaps(t, "lbd-backend.service"); strings.Join(be, ",") != strings.Join(caps, ",") {
		t.Fatalf("lbd-backend.service grants %v, lbd.service %v: this test runs both under one set", be, caps)
	}
	var want uint64
	for _, c := range caps {
		bit, ok := capBit[c]
		if !ok {
			t.Fatalf("unknown capability %q in the unit", c)
		}
		want |= 1 << bit
	}
	cfg := strings.Replace(string(configs.Demo), "      type: tcp", "      type: http\n      path: /\n      through_tunnel: true", 1)
	s := mustSandboxOpts(t, sandboxOptions{config: []byte(cfg), lbs: 1, backends: 3, cluster: true, wrap: setpriv(caps)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, p := range append(s.lbProcs, s.beProcs...) {
		if eff, bnd := procCaps(t, p.Pid()); eff != want || bnd != want {
			t.Fatalf("%s on %s runs with CapEff %#x CapBnd %#x, want %#x", p.Name, p.Host.Name, eff, bnd, want)
		}
	}
	serving := func(when string) {
		t.Helper()
		if tl := s.Requests(ctx, 30, 4); tl.Failures != 0 || len(tl.By) != 3 {
			t.Fatalf("%s: %d of 30 requests failed, served by %v: %v", when, tl.Failures, tl.By, tl.Errors)
		}
		for _, h := range s.fleet.Backends {
			if _, err := s.WaitBackend(ctx, 0, h.Addr, "active", 10*time.Second); err != nil {
				t.Fatalf("%s: %v", when, err)
			}
		}
		st, err := s.LBStatus(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range st.VIPs[0].Backends {
			if b.Probe != "up" {
				t.Errorf("%s: backend %s probed through the tunnel: %s (%s)", when, b.Address, b.Probe, b.Error)
			}
		}
		if st.Cluster == nil || len(st.Cluster.Members) != 1 || st.Cluster.Members[0].State != "alive" {
			t.Errorf("%s: cluster %+v", when, st.Cluster)
		}
	}
	serving("started")

	lb := s.lbProcs[0]
	if err := lb.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := lb.WaitForLog("config reloaded", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := lb.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := s.StartLB(0); err != nil {
		t.Fatal(err)
	}
	if out := s.lbProcs[0].Output(); !strings.Contains(out, "adopted pinned link") {
		t.Errorf("restarted lbd did not adopt its pins:\n%s", out)
	}
	serving("restarted")

	// one capability less: each is needed. In the place of lb0's lbd run and be0's lbd
	// backend, stopped (their programs keep forwarding from the pins), so that a run that
	// needs no more would start: adopt the pins, listen, serve.
	lbHost, beHost := s.fleet.LBs[0], s.fleet.Backends[0]
	for _, p := range []interface{ Stop() error }{s.lbProcs[0], s.beProcs[0]} {
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range caps {
		less := append(append([]string{}, caps[:i]...), caps[i+1:]...)
		lbArgs := []string{s.exe, "run", "--config", s.lbCfgs[0], "--pin-dir", s.pinDir(lbHost)}
		beArgs := []string{s.exe, "backend", "--interface", beHost.Link, "--pin-dir", s.pinDir(beHost),
			"--lb-sources", lbHost.Addr.String(), "--vips", s.vip.String()}
		for _, run := range []struct {
			h         *testbed.Host
			args      []string
			readyLine string
		}{{lbHost, lbArgs, "lbd serving"}, {beHost, beArgs, "backend ready"}} {
			p, err := s.fleet.Start(run.h, "setpriv", append(setpriv(less)[1:], run.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			ready := p.WaitForLog(run.readyLine, 20*time.Second)
			_ = p.Stop()
			switch out := p.Output(); {
			case ready == nil:
				t.Errorf("lbd %s started without CAP_%s: the unit grants a capability lbd does not need", run.args[1], strings.ToUpper(c))
			case !strings.Contains(out, "operation not permitted") && !strings.Contains(out, "permission denied"):
				t.Errorf("lbd %s without CAP_%s did not start, but not for want of a permission: %v\n%s", run.args[1], strings.ToUpper(c), ready, out)
			}
		}
	}
}
