package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/internal/wait"
)

// TestSoakReloadsRestartsUpgrade keeps connections busy through the VIP while the config is
// reloaded every 100 ms (a second VIP and a fourth backend come and go, weights change),
// lbd run is restarted, and once upgraded to another binary. No request on an established
// connection may fail or move, and lbd must not grow: its file descriptors, its memory, the
// ring slots in use.
//
// make test runs a short soak (20 s, 50 connections, 2 restarts and the upgrade).
// LBD_SOAK=5m LBD_SOAK_CONNS=200 LBD_SOAK_RESTARTS=10 runs the long one (opt-in).
func TestSoakReloadsRestartsUpgrade(t *testing.T) {
	dur, conns, restarts := 20*time.Second, 50, 2
	if v := os.Getenv("LBD_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LBD_SOAK=%q: %v", v, err)
		}
		dur, conns, restarts = d, 200, 10
	}
	if v, err := strconv.Atoi(os.Getenv("LBD_SOAK_CONNS")); err == nil {
		conns = v
	}
	if v, err := strconv.Atoi(os.Getenv("LBD_SOAK_RESTARTS")); err == nil {
		restarts = v
	}
	s := mustSandbox(t, configs.Demo, 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), dur+3*time.Minute)
	defer cancel()

	// the other binary: lbd itself, built from this source (the sandbox runs the test binary)
	upgrade := filepath.Join(t.TempDir(), "lbd-upgrade")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", upgrade, ".").CombinedOutput(); err != nil {
		t.Skipf("cannot build the upgrade binary (go build: %v): %s", err, out)
	}

	// the connections, each sending requests back to back and checking its backend
	var requests, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range conns {
		conn, err := s.fleet.Client.DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", s.vip, s.vipPort))
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		k := &keepAlive{conn: conn, r: bufio.NewReader(conn)}
		first, err := k.try()
		if err != nil {
			t.Fatalf("connection %d: first request: %v", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := k.try()
				requests.Add(1)
				if err == nil && got != first {
					err = fmt.Errorf("moved from %s to %s", first, got)
				}
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("connection %d: %w", i, err))
					return
				}
			}
		}()
	}

	base, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	variant := func(n int) string {
		c := string(base)
		// weights of the three live backends change; a fourth (unreachable: down) comes and goes
		c = strings.Replace(c, "      - address: 198.18.0.12\n        weight: 1\n",
			fmt.Sprintf("      - address: 198.18.0.12\n        weight: %d\n", 1+n%3), 1)
		if n%2 == 1 {
			c = strings.Replace(c, "      - address: 198.18.0.13\n", "      - address: 198.18.0.19\n        weight: 2\n      - address: 198.18.0.13\n", 1)
		}
		if n%4 >= 2 {
			c += "  - name: extra\n    address: 198.18.0.30\n    port: 8080\n    protocol: tcp\n    backends:\n      - address: 198.18.0.11\n      - address: 198.18.0.12\n"
		}
		return c
	}

	reloads, restarted := 0, 0
	var sample1, sample2 lbdUsage
	every := dur / time.Duration(restarts+2) // restarts, the upgrade, and a quiet stretch at the end
	nextRestart := time.Now().Add(every)
	end := time.Now().Add(dur)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	// every restart happens, however long each takes on a loaded machine
	for now := time.Now(); now.Before(end) || restarted <= restarts; now = <-tick.C {
		if ctx.Err() != nil {
			t.Fatalf("the soak ran out of time: %d of %d restarts", restarted, restarts+1)
		}
		if failures.Load() > 0 {
			break
		}
		if restarted <= restarts && (now.After(nextRestart) || now.After(end)) {
			_ = s.lbProcs[0].Stop()
			if restarted == restarts { // the last restart is the upgrade
				exe := s.exe
				s.exe = upgrade
				err = s.StartLB(0)
				s.exe = exe
			} else {
				err = s.StartLB(0)
			}
			if err != nil {
				t.Fatalf("restart %d: %v", restarted+1, err)
			}
			restarted++
			nextRestart = now.Add(every)
			if restarted == restarts+1 {
				sample1 = measureLbdUsage(t, s)
			}
			continue
		}
		if err := os.WriteFile(s.cfgPath, []byte(variant(reloads)), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = s.lbProcs[0].Signal(syscall.SIGHUP)
		reloads++
	}
	// back to the base config, settled, then measured again
	if err := os.WriteFile(s.cfgPath, base, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = s.lbProcs[0].Signal(syscall.SIGHUP)
	sample2 = measureLbdUsage(t, s) // it waits for the reload to be applied
	close(stop)
	wg.Wait()

	t.Logf("soak: %v, %d connections, %d requests, %d reloads, %d restarts (the last an upgrade to %s)",
		dur, conns, requests.Load(), reloads, restarted, filepath.Base(upgrade))
	t.Logf("lbd after the upgrade: %v; at the end: %v", sample1, sample2)
	if f := failures.Load(); f > 0 {
		t.Fatalf("%d requests on established connections failed: %v", f, firstErr.Load())
	}
	if restarted != restarts+1 {
		t.Errorf("%d restarts, want %d", restarted, restarts+1)
	}
	if sample1.pid == 0 {
		t.Fatal("the upgraded lbd was never measured")
	}
	if sample2.fds > sample1.fds || sample2.bpfFDs > sample1.bpfFDs {
		t.Errorf("lbd's file descriptors grew over %d reloads: %v → %v\nBPF before: %v\nBPF after:  %v", reloads, sample1, sample2, sample1.bpf, sample2.bpf)
	}
	if sample2.ringSlots != 1 {
		t.Errorf("%d ring slots in use for 1 VIP: rings leak", sample2.ringSlots)
	}
	if sample2.rssKB > sample1.rssKB+32*1024 {
		t.Errorf("lbd's memory grew by %d KiB over the reloads: %v → %v", sample2.rssKB-sample1.rssKB, sample1, sample2)
	}
}

// lbdUsage is what lbd holds: its file descriptors (all, and BPF objects), its resident memory,
// and the ring slots the data path uses.
type lbdUsage struct {
	pid, fds, bpfFDs, rssKB, ringSlots int
	bpf                                []string // what each BPF descriptor is (fdinfo)
}

func (u lbdUsage) String() string {
	return fmt.Sprintf("pid %d: %d fds (%d BPF), %d KiB resident, %d ring slots", u.pid, u.fds, u.bpfFDs, u.rssKB, u.ringSlots)
}

// measureLbdUsage waits until the running lbd serves exactly the base config's one VIP (one
// ring slot) and reads what it holds.
func measureLbdUsage(t *testing.T, s *sandbox) lbdUsage {
	t.Helper()
	p := s.lbProcs[0]
	u := lbdUsage{pid: p.Pid()}
	var err error
	// settled: no reload for a second (the file watcher may follow a SIGHUP with its own), the
	// last one the base config's single VIP
	last, quietSince := -1, time.Now()
	if err := wait.Until(15*time.Second, 100*time.Millisecond, func() (bool, error) {
		out := p.Output()
		n := strings.Count(out, "config reloaded")
		if n != last {
			last, quietSince = n, time.Now()
			return false, nil
		}
		i := strings.LastIndex(out, "config reloaded")
		return time.Since(quietSince) > time.Second && (i < 0 || strings.Contains(out[i:], "vips=1")), nil
	}); err != nil {
		t.Logf("lbd did not settle: %v", err)
	}
	if u.ringSlots, err = dataplane.PinnedRingSlots(s.pinDir(s.fleet.LBs[0])); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", u.pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		u.fds++
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", u.pid, fd.Name())); err == nil && strings.HasPrefix(l, "anon_inode:bpf") {
			u.bpfFDs++
			info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", u.pid, fd.Name()))
			kind := l
			for _, line := range strings.Split(string(info), "\n") {
				if v, ok := strings.CutPrefix(line, "map_type:"); ok {
					kind += " map_type " + strings.TrimSpace(v)
				}
				if v, ok := strings.CutPrefix(line, "max_entries:"); ok {
					kind += " entries " + strings.TrimSpace(v)
				}
				if v, ok := strings.CutPrefix(line, "prog_type:"); ok {
					kind += " prog_type " + strings.TrimSpace(v)
				}
			}
			u.bpf = append(u.bpf, kind)
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", u.pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			u.rssKB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	return u
}
