package main

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/lbdproj/lbd/bench/internal/host"
)

// Results is what a run measured, as -json writes it.
type Results struct {
	Kernel      string         `json:"kernel"`
	CPU         string         `json:"cpu"`
	CPUs        int            `json:"cpus"`
	Rounds      int            `json:"rounds"`
	Seconds     float64        `json:"seconds_per_measurement"`
	Connections int            `json:"connections"`
	Threads     int            `json:"threads"`
	Backends    int            `json:"backends"`
	Load        []string       `json:"load_generator"`
	Took        string         `json:"took"`
	Setups      []*SetupResult `json:"setups"`
	Ratios      []Ratio        `json:"ratios"`
	Diagnosis   []Diagnosis    `json:"diagnosis,omitempty"`
}

// SetupResult is one setup's measurements and their summary over the rounds.
type SetupResult struct {
	Key         string  `json:"key"`
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Runs        []Run   `json:"runs"`
	Median      float64 `json:"conn_per_sec_median"`
	Min         float64 `json:"conn_per_sec_min"`
	Max         float64 `json:"conn_per_sec_max"`
	Errors      int     `json:"errors"`
	// medians over the rounds of the CPU µs per connection by role
	CPU map[string]float64 `json:"cpu_us_per_conn_median"`
}

// Ratio is lbd's rate over another setup's, taken round by round (each round's pair ran
// minutes apart at most), then the median and the extremes of those.
type Ratio struct {
	Of       string    `json:"of"`
	To       string    `json:"to"`
	Median   float64   `json:"median"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
	PerRound []float64 `json:"per_round"`
}

// Diagnosis is a run with BPF statistics on, outside the figures.
type Diagnosis struct {
	Key  string `json:"key"`
	Name string `json:"name"`
	Run  Run    `json:"run"`
}

func (s *SetupResult) summarize() {
	var v []float64
	cpu := map[string][]float64{}
	for _, r := range s.Runs {
		v = append(v, r.ConnPerSec)
		s.Errors += r.Errors
		for k, x := range r.CPU {
			cpu[k] = append(cpu[k], x)
		}
	}
	if len(v) == 0 {
		return
	}
	s.Median, s.Min, s.Max = host.Median(v), slices.Min(v), slices.Max(v)
	s.CPU = map[string]float64{}
	for k, xs := range cpu {
		s.CPU[k] = host.Median(xs)
	}
}

func ratios(by map[string]*SetupResult) []Ratio {
	l, ok := by["lbd"]
	if !ok {
		return nil
	}
	var out []Ratio
	for _, to := range []string{"direct", "floor", "haproxy", "nftables"} {
		o, ok := by[to]
		if !ok {
			continue
		}
		r := Ratio{Of: "lbd", To: to}
		for i := range min(len(l.Runs), len(o.Runs)) {
			r.PerRound = append(r.PerRound, l.Runs[i].ConnPerSec/o.Runs[i].ConnPerSec)
		}
		if len(r.PerRound) == 0 {
			continue
		}
		r.Median, r.Min, r.Max = host.Median(r.PerRound), slices.Min(r.PerRound), slices.Max(r.PerRound)
		out = append(out, r)
	}
	return out
}

func printHeader(r Results, sel []setup) {
	fmt.Printf("new TCP connections per second through a VIP, client ─ bridge ─ LB node ─ bridge ─ %d backends (network namespaces)\n", r.Backends)
	fmt.Printf("kernel %s, %s, %d CPUs (client, LB node and backends share them)\n", r.Kernel, r.CPU, r.CPUs)
	fmt.Printf("load: %s, %v per measurement after %v of warm-up; backends: a Go HTTP server each\n",
		strings.Join(r.Load, " "), *duration, *warmup)
	fmt.Printf("%d rounds, each measuring every setup on a fresh fleet, the order rotated by one each round\n", r.Rounds)
	for _, s := range sel {
		fmt.Printf("  %s: %s\n", s.name, s.desc)
	}
	fmt.Println()
}

func printResults(r Results) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "setup\tconn/s median\tmin\tmax\terrors\tCPU µs/conn: machine\twrk\tservers\tLB process\tlbd backend\t\n")
	for _, s := range r.Setups {
		lbp := s.CPU["haproxy"] + s.CPU["lbd run"]
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%d\t%.1f\t%.1f\t%.1f\t%s\t%s\t\n", s.Name, s.Median, s.Min, s.Max, s.Errors,
			s.CPU["machine"], s.CPU["wrk"], s.CPU["servers"], dash(lbp, s.Key == "haproxy" || s.Key == "lbd"),
			dash(s.CPU["lbd backend"], s.Key == "lbd" || s.Key == "floor"))
	}
	tw.Flush()
	fmt.Println()
	for _, q := range r.Ratios {
		fmt.Printf("lbd / %-9s %.2f (rounds %.2f–%.2f: %s)\n", q.To, q.Median, q.Min, q.Max, joinF(q.PerRound))
	}
	fmt.Println("ratios: lbd's rate over the other's in the same round, then the median and extremes over the rounds")
	fmt.Println("CPU µs/conn: CPU time per connection; machine: all CPUs' busy time (other work on the machine included),")
	fmt.Println("  the rest by process (system time includes the softirq work done in the process's context, where veth")
	fmt.Println("  traffic and XDP mostly run); LB process: haproxy, or lbd run's control plane")
	var busy []string
	for _, s := range r.Setups {
		var b, st []float64
		for _, run := range s.Runs {
			b, st = append(b, run.MachineBusy), append(st, run.Steal)
		}
		busy = append(busy, fmt.Sprintf("%s %.0f%% (steal %.0f%%)", s.Key, 100*host.Median(b), 100*host.Median(st)))
	}
	fmt.Printf("machine busy during the measurements (median): %s\n", strings.Join(busy, ", "))
	if len(r.Diagnosis) > 0 {
		fmt.Println("\nwith BPF statistics on (one more measurement each, not in the figures above; the statistics cost a little):")
		for _, d := range r.Diagnosis {
			var parts []string
			keys := make([]string, 0, len(d.Run.ProgNs))
			for k := range d.Run.ProgNs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var progs float64
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s %.2f µs (%.1f runs)", k, d.Run.ProgNs[k]/1e3, d.Run.ProgRuns[k]))
				progs += d.Run.ProgNs[k]
			}
			fmt.Printf("  %s: %.0f conn/s; per connection: %s; programs %.2f µs of %.1f µs machine CPU (%.1f%%)\n", d.Name,
				d.Run.ConnPerSec, strings.Join(parts, ", "), progs/1e3, d.Run.CPU["machine"], 100*progs/1e3/d.Run.CPU["machine"])
		}
	}
	fmt.Printf("\ntook %s\n", r.Took)
}

func dash(v float64, show bool) string {
	if !show {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

func joinF(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(s, " ")
}
