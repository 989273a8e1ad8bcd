package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/lbdproj/lbd/internal/testbed"
	"golang.org/x/sys/unix"
)

var execLookPath = exec.LookPath

// Run is one measurement.
type Run struct {
	Round      int     `json:"round,omitempty"`
	Requests   int     `json:"requests"`
	Seconds    float64 `json:"seconds"`
	ConnPerSec float64 `json:"conn_per_sec"`
	Errors     int     `json:"errors"` // wrk's socket errors and non-2xx answers
	// CPU time per connection, µs: of each process role (wrk, servers, lbd run, lbd
	// backend, haproxy) and of the whole machine (every CPU's busy time, this run's and
	// anything else the machine ran meanwhile)
	CPU         map[string]float64 `json:"cpu_us_per_conn"`
	MachineBusy float64            `json:"machine_busy"`  // busy share of all CPUs
	Steal       float64            `json:"machine_steal"` // share taken by the hypervisor
	// with BPF statistics on: each program's run time and runs per connection
	ProgNs   map[string]float64 `json:"bpf_ns_per_conn,omitempty"`
	ProgRuns map[string]float64 `json:"bpf_runs_per_conn,omitempty"`
}

func wrkCommand(url string) []string {
	return []string{"wrk", "-t", strconv.Itoa(*threads), "-c", strconv.Itoa(*conns), "-H", "Connection: close", url}
}

var (
	reReqs   = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m)`)
	reSock   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// wrkResult is what wrk says, and the CPU time it used.
type wrkResult struct {
	requests, errors int
	secs             float64
	cpu              time.Duration
}

// runWrk runs wrk on the client for d.
func runWrk(client *testbed.Host, d time.Duration) (wrkResult, error) {
	args := wrkCommand(fmt.Sprintf("http://%s/", vip))
	args = append(args[1:len(args)-1], "-d", fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds())), args[len(args)-1])
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	cmd := client.Command(ctx, "wrk", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	var r wrkResult
	m := reReqs.FindStringSubmatch(string(out))
	if m == nil {
		return r, fmt.Errorf("wrk said no request count:\n%s", out)
	}
	r.requests, _ = strconv.Atoi(m[1])
	v, _ := strconv.ParseFloat(m[2], 64)
	r.secs = v * map[string]float64{"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[m[3]]
	if m := reSock.FindStringSubmatch(string(out)); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.errors += n
		}
	}
	if m := reNon2xx.FindStringSubmatch(string(out)); m != nil {
		n, _ := strconv.Atoi(m[1])
		r.errors += n
	}
	if cmd.ProcessState != nil {
		r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if r.requests == 0 || r.secs <= 0 {
		return r, fmt.Errorf("wrk made no request:\n%s", out)
	}
	return r, nil
}

// measureLoad runs wrk for -duration and reads the CPU time of the machine and of the
// fleet's processes around it.
func measureLoad(st *stand, bpfStats bool) (Run, error) {
	var stats interface{ Close() error }
	if bpfStats {
		c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			return Run{}, fmt.Errorf("enable BPF statistics: %w", err)
		}
		stats = c
	}
	progs0 := progStats(st.progs)
	procs0 := procCPU(st.procs)
	m0, err := machineCPU()
	if err != nil {
		return Run{}, err
	}
	w, err := runWrk(st.fleet.Client, *duration)
	m1, err2 := machineCPU()
	procs1 := procCPU(st.procs)
	progs1 := progStats(st.progs)
	if stats != nil {
		stats.Close()
	}
	if err != nil {
		return Run{}, err
	}
	if err2 != nil {
		return Run{}, err2
	}
	n := float64(w.requests)
	r := Run{Requests: w.requests, Seconds: w.secs, ConnPerSec: n / w.secs, Errors: w.errors,
		CPU: map[string]float64{"wrk": us(w.cpu) / n}}
	for role, t := range procs1 {
		r.CPU[role] = us(t-procs0[role]) / n
	}
	busy, total := m1.busy-m0.busy, m1.total-m0.total
	r.CPU["machine"] = us(busy) / n
	r.MachineBusy = float64(busy) / float64(max(total, 1))
	r.Steal = float64(m1.steal-m0.steal) / float64(max(total, 1))
	if bpfStats {
		r.ProgNs, r.ProgRuns = map[string]float64{}, map[string]float64{}
		for name, s1 := range progs1 {
			s0 := progs0[name]
			base := strings.SplitN(name, "#", 2)[0] // the backends' programs add up
			r.ProgNs[base] += float64((s1.Runtime - s0.Runtime).Nanoseconds()) / n
			r.ProgRuns[base] += float64(s1.RunCount-s0.RunCount) / n
		}
	}
	return r, nil
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func progStats(progs map[string]*ebpf.Program) map[string]ebpf.ProgramStats {
	out := map[string]ebpf.ProgramStats{}
	for name, p := range progs {
		if s, err := p.Stats(); err == nil {
			out[name] = *s
		}
	}
	return out
}

// procCPU is the CPU time (user + system) of the fleet's processes by role.
func procCPU(procs map[string][]*testbed.Process) map[string]time.Duration {
	out := map[string]time.Duration{}
	for role, ps := range procs {
		for _, p := range ps {
			out[role] += pidCPU(p.Pid())
		}
	}
	return out
}

// clock ticks per second of /proc's times (USER_HZ, 100 on Linux)
const userHZ = 100

func pidCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// the fields after the command name, which is in parentheses and may hold spaces
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+stt) * time.Second / userHZ
}

type cpuTimes struct{ busy, total, steal time.Duration }

// machineCPU reads /proc/stat's first line: every CPU's time by kind.
func machineCPU() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat: %q", line)
	}
	var v [8]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / userHZ }
	var total int64
	for _, x := range v {
		total += x
	}
	idle := v[3] + v[4] // idle, iowait
	return cpuTimes{busy: tick(total - idle), total: tick(total), steal: tick(v[7])}, nil
}
