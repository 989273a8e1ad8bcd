// Command report turns one `make bench` run's JSON (bench/results/<date>-<host>/: conns.json,
// datapath.json, throughput.json, each if present) into summary.md and plots (PNG and SVG,
// drawn with gonum.org/v1/plot) in the same directory. It prints nothing it did not read
// from those files.
//
//	go run ./bench/report -dir bench/results/2026-11-30-host [-commit abc1234]
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// The parts of each program's JSON the report uses.
type (
	connsResults struct {
		Kernel  string   `json:"kernel"`
		CPU     string   `json:"cpu"`
		CPUs    int      `json:"cpus"`
		Rounds  int      `json:"rounds"`
		Seconds float64  `json:"seconds_per_measurement"`
		Load    []string `json:"load_generator"`
		Took    string   `json:"took"`
		Setups  []struct {
			Key, Name, Description string
			Median                 float64            `json:"conn_per_sec_median"`
			Min                    float64            `json:"conn_per_sec_min"`
			Max                    float64            `json:"conn_per_sec_max"`
			Errors                 int                `json:"errors"`
			CPU                    map[string]float64 `json:"cpu_us_per_conn_median"`
		} `json:"setups"`
		Ratios []struct {
			To       string    `json:"to"`
			Median   float64   `json:"median"`
			Min      float64   `json:"min"`
			Max      float64   `json:"max"`
			PerRound []float64 `json:"per_round"`
		} `json:"ratios"`
		Diagnosis []struct {
			Name string `json:"name"`
			Run  struct {
				ConnPerSec float64            `json:"conn_per_sec"`
				CPU        map[string]float64 `json:"cpu_us_per_conn"`
				ProgNs     map[string]float64 `json:"bpf_ns_per_conn"`
				ProgRuns   map[string]float64 `json:"bpf_runs_per_conn"`
			} `json:"run"`
		} `json:"diagnosis"`
	}
	datapathResults struct {
		Kernel    string `json:"kernel"`
		PinnedCPU int    `json:"pinned_cpu"`
		Rounds    int    `json:"rounds"`
		Programs  []struct {
			Name     string `json:"name"`
			Xlated   int    `json:"xlated_insns"`
			Verified uint32 `json:"verified_insns"`
			Jited    uint32 `json:"jited_bytes"`
		} `json:"programs"`
		Paths []struct {
			Key     string   `json:"key"`
			Lookups []string `json:"map_lookups"`
			Updates []string `json:"map_updates"`
		} `json:"paths"`
		Methods []struct {
			Method      string `json:"method"`
			Description string `json:"description"`
			Samples     int    `json:"samples_per_scenario"`
			RunsPer     int    `json:"runs_per_sample"`
			Rows        []struct {
				Scenario string  `json:"scenario"`
				Key      string  `json:"key"`
				Median   float64 `json:"ns_median"`
				P10      float64 `json:"ns_p10"`
				P90      float64 `json:"ns_p90"`
				Net      float64 `json:"ns_net"`
				XPass    float64 `json:"x_pass_floor"`
				XIPIP    float64 `json:"x_ipip_floor"`
			} `json:"rows"`
		} `json:"methods"`
	}
	throughputResults struct {
		Seconds float64 `json:"seconds_per_cell"`
		Rounds  int     `json:"rounds"`
		Command []string
		Rows    []struct {
			Program     string    `json:"program"`
			Traffic     string    `json:"traffic"`
			Threads     int       `json:"threads"`
			Mpps        float64   `json:"mpps"`
			RoundsMpps  []float64 `json:"rounds_mpps"`
			MppsPerCore float64   `json:"mpps_per_core"`
			NsPerPkt    float64   `json:"ns_per_pkt_per_core"`
			XIPIP       float64   `json:"x_ipip_floor"`
		} `json:"rows"`
	}
)

func main() {
	dir := flag.String("dir", "", "the run's results directory")
	commit := flag.String("commit", "", "the commit measured, for the summary")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "report: -dir is required")
		os.Exit(2)
	}
	if err := run(*dir, *commit); err != nil {
		fmt.Fprintf(os.Stderr, "report: %v\n", err)
		os.Exit(1)
	}
}

// readJSON reads name in dir into v; false if there is no such file.
func readJSON(dir, name string, v any) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	return true, nil
}

func run(dir, commit string) error {
	var md strings.Builder
	fmt.Fprintf(&md, "# lbd benchmark report: %s\n\n", filepath.Base(dir))
	if b, err := os.ReadFile(filepath.Join(dir, "machine.txt")); err == nil {
		md.WriteString("Machine (as `make bench` found it):\n\n```\n")
		md.Write(b)
		md.WriteString("```\n\n")
	}
	if commit != "" {
		fmt.Fprintf(&md, "Commit measured: `%s`. Absolute figures move between runs on a shared VM: compare the ratios.\n\n", commit)
	}
	var c connsResults
	if ok, err := readJSON(dir, "conns.json", &c); err != nil {
		return err
	} else if ok {
		if err := connsSection(&md, dir, c); err != nil {
			return err
		}
	}
	var d datapathResults
	if ok, err := readJSON(dir, "datapath.json", &d); err != nil {
		return err
	} else if ok {
		if err := datapathSection(&md, dir, d); err != nil {
			return err
		}
	}
	var t throughputResults
	if ok, err := readJSON(dir, "throughput.json", &t); err != nil {
		return err
	} else if ok {
		if err := throughputSection(&md, dir, t); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "summary.md"), []byte(md.String()), 0o644)
}

func connsSection(md *strings.Builder, dir string, c connsResults) error {
	fmt.Fprintf(md, "## New TCP connections per second through the VIP\n\n")
	fmt.Fprintf(md, "`%s`, %.0f s per measurement, %d rounds (a fresh fleet for every measurement, setups interleaved), took %s.\n\n",
		strings.Join(c.Load, " "), c.Seconds, c.Rounds, c.Took)
	fmt.Fprintf(md, "![connections per second](conns.png)\n\n")
	fmt.Fprintf(md, "| lbd / | median | rounds (min–max) | per round |\n|---|---|---|---|\n")
	for _, r := range c.Ratios {
		var pr []string
		for _, x := range r.PerRound {
			pr = append(pr, fmt.Sprintf("%.2f", x))
		}
		fmt.Fprintf(md, "| %s | **%.2f** | %.2f–%.2f | %s |\n", r.To, r.Median, r.Min, r.Max, strings.Join(pr, " "))
	}
	fmt.Fprintf(md, "\n| setup | conn/s median | min | max | errors | CPU µs/conn: wrk | servers | LB process | lbd backend | machine |\n|---|---|---|---|---|---|---|---|---|---|\n")
	var names []string
	var vals plotter.Values
	var errs plotter.YErrors
	for _, s := range c.Setups {
		fmt.Fprintf(md, "| %s | %.0f | %.0f | %.0f | %d | %.0f | %.0f | %.1f | %.1f | %.0f |\n", s.Name, s.Median, s.Min, s.Max, s.Errors,
			s.CPU["wrk"], s.CPU["servers"], s.CPU["haproxy"]+s.CPU["lbd run"], s.CPU["lbd backend"], s.CPU["machine"])
		names = append(names, s.Key)
		vals = append(vals, s.Median)
		errs = append(errs, struct{ Low, High float64 }{s.Median - s.Min, s.Max - s.Median})
	}
	md.WriteString("\nSetups:\n\n")
	for _, s := range c.Setups {
		fmt.Fprintf(md, "- **%s**: %s\n", s.Name, s.Description)
	}
	if len(c.Diagnosis) > 0 {
		md.WriteString("\nWith the kernel's BPF statistics on (one more measurement each, not in the figures above), time in BPF programs per connection:\n\n")
		md.WriteString("| setup | conn/s | program: µs per connection (runs) | programs / machine CPU |\n|---|---|---|---|\n")
		for _, d := range c.Diagnosis {
			var parts []string
			var sum float64
			for _, k := range sortedKeys(d.Run.ProgNs) {
				parts = append(parts, fmt.Sprintf("%s %.2f (%.1f)", k, d.Run.ProgNs[k]/1e3, d.Run.ProgRuns[k]))
				sum += d.Run.ProgNs[k] / 1e3
			}
			fmt.Fprintf(md, "| %s | %.0f | %s | %.2f of %.0f µs |\n", d.Name, d.Run.ConnPerSec, strings.Join(parts, ", "), sum, d.Run.CPU["machine"])
		}
	}
	md.WriteString("\n")
	p := plot.New()
	p.Title.Text = "New TCP connections per second (median, bars: min–max over rounds)"
	p.Y.Label.Text = "connections/s"
	bars, err := plotter.NewBarChart(vals, vg.Points(40))
	if err != nil {
		return err
	}
	bars.Color = color.RGBA{R: 70, G: 110, B: 170, A: 255}
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYer
		plotter.YErrorer
	}{xyOf(vals), errs})
	if err != nil {
		return err
	}
	p.Add(bars, eb)
	p.NominalX(names...)
	p.Y.Min = 0
	return save(p, dir, "conns")
}

func datapathSection(md *strings.Builder, dir string, d datapathResults) error {
	fmt.Fprintf(md, "## xdp_lb per packet (BPF_PROG_TEST_RUN)\n\n![ns per packet](datapath.png)\n\n")
	byMethod := map[string]int{}
	for i, m := range d.Methods {
		byMethod[m.Method] = i
		fmt.Fprintf(md, "- **%s**: %s; %d samples per scenario of %d runs each.\n", m.Method, m.Description, m.Samples, m.RunsPer)
	}
	md.WriteString("\n| scenario |")
	for _, m := range d.Methods {
		if m.Method == "call" {
			md.WriteString(" call: ns median (p10–p90) | × XDP_PASS | × IPIP floor |")
		} else {
			md.WriteString(" wrap: ns/run (p10–p90) | net ns | net × IPIP floor net |")
		}
	}
	md.WriteString("\n|---|" + strings.Repeat("---|---|---|", len(d.Methods)) + "\n")
	var keys []string
	names := map[string]string{}
	rowsBy := map[string]map[string]int{}
	for _, m := range d.Methods {
		rowsBy[m.Method] = map[string]int{}
		for i, r := range m.Rows {
			rowsBy[m.Method][r.Key] = i
			if _, ok := names[r.Key]; !ok {
				keys = append(keys, r.Key)
				names[r.Key] = r.Scenario
			}
		}
	}
	for _, k := range keys {
		fmt.Fprintf(md, "| %s |", names[k])
		for _, m := range d.Methods {
			i, ok := rowsBy[m.Method][k]
			if !ok {
				md.WriteString(" | | |")
				continue
			}
			r := m.Rows[i]
			if m.Method == "call" {
				fmt.Fprintf(md, " %.0f (%.0f–%.0f) | %.2f | %.2f |", r.Median, r.P10, r.P90, r.XPass, r.XIPIP)
			} else {
				x := fmt.Sprintf("%.2f", r.XIPIP)
				if strings.HasPrefix(k, "floor_") && k != "floor_ipip" && k != "floor_insert" {
					x = "-"
				}
				fmt.Fprintf(md, " %.0f (%.0f–%.0f) | %.0f | %s |", r.Median, r.P10, r.P90, r.Net, x)
			}
		}
		md.WriteString("\n")
	}
	md.WriteString("\n| program | xlated insns | verified insns | jited bytes |\n|---|---|---|---|\n")
	for _, p := range d.Programs {
		fmt.Fprintf(md, "| %s | %d | %d | %d |\n", p.Name, p.Xlated, p.Verified, p.Jited)
	}
	md.WriteString("\n| xdp_lb scenario | map lookups | map updates |\n|---|---|---|\n")
	for _, p := range d.Paths {
		fmt.Fprintf(md, "| %s | %d (%s) | %d |\n", p.Key, len(p.Lookups), strings.Join(p.Lookups, ", "), len(p.Updates))
	}
	md.WriteString("\n")

	// grouped bars: each method's figure per xdp_lb scenario and the IPIP floor
	p := plot.New()
	p.Title.Text = "xdp_lb per packet: one packet per call vs Repeat through the wrapper (net)"
	p.Y.Label.Text = "ns"
	plotKeys := []string{"floor_ipip", "hit", "miss", "syn", "pass", "icmp"}
	w := vg.Points(16)
	colors := []color.Color{color.RGBA{R: 200, G: 110, B: 60, A: 255}, color.RGBA{R: 70, G: 110, B: 170, A: 255}}
	for mi, m := range d.Methods {
		var vals plotter.Values
		for _, k := range plotKeys {
			v := 0.0
			if i, ok := rowsBy[m.Method][k]; ok {
				v = m.Rows[i].Median
				if m.Method == "wrap" {
					v = m.Rows[i].Net
				}
			}
			vals = append(vals, v)
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		b.Color = colors[mi%len(colors)]
		b.Offset = w * vg.Length(2*mi-len(d.Methods)+1) / 2
		p.Add(b)
		label := "one packet per call (median)"
		if m.Method == "wrap" {
			label = "Repeat via wrapper, net of the wrapper floor (median)"
		}
		p.Legend.Add(label, b)
	}
	p.Legend.Top = true
	p.NominalX(plotKeys...)
	p.Y.Min = 0
	return save(p, dir, "datapath")
}

func throughputSection(md *strings.Builder, dir string, t throughputResults) error {
	fmt.Fprintf(md, "## Forwarding rate (real XDP on veths, bench/throughput)\n\n![Mpps per core](throughput.png)\n\n")
	fmt.Fprintf(md, "%.0f s per cell in %d rounds.\n\n", t.Seconds, t.Rounds)
	md.WriteString("| program | traffic | threads | Mpps | rounds | Mpps/core | ns/pkt per core | × IPIP floor |\n|---|---|---|---|---|---|---|---|\n")
	var names []string
	var vals plotter.Values
	for _, r := range t.Rows {
		var rs []string
		for _, x := range r.RoundsMpps {
			rs = append(rs, fmt.Sprintf("%.2f", x))
		}
		x := "-"
		if r.XIPIP > 0 {
			x = fmt.Sprintf("%.2f", r.XIPIP)
		}
		fmt.Fprintf(md, "| %s | %s | %d | %.2f | %s | %.2f | %.0f | %s |\n", r.Program, r.Traffic, r.Threads, r.Mpps, strings.Join(rs, " "),
			r.MppsPerCore, r.NsPerPkt, x)
		if r.Threads == 1 {
			n := r.Traffic
			if strings.HasPrefix(r.Program, "floor") {
				n = strings.TrimPrefix(r.Program, "floor: ")
			}
			names = append(names, shortName(n))
			vals = append(vals, r.MppsPerCore)
		}
	}
	md.WriteString("\n")
	p := plot.New()
	p.Title.Text = "Forwarding rate, one generator thread (Mpps per core of CPU time)"
	p.Y.Label.Text = "Mpps/core"
	b, err := plotter.NewBarChart(vals, vg.Points(30))
	if err != nil {
		return err
	}
	b.Color = color.RGBA{R: 70, G: 140, B: 90, A: 255}
	p.Add(b)
	p.NominalX(names...)
	p.Y.Min = 0
	return save(p, dir, "throughput")
}

// shortName fits a traffic pattern or floor under its bar.
func shortName(s string) string {
	switch {
	case strings.HasPrefix(s, "same flow"):
		return "lbd: one flow"
	case strings.Contains(s, "cycled"):
		return "lbd: 64K flows"
	case strings.HasPrefix(s, "new flow"):
		return "lbd: new flows"
	case strings.HasPrefix(s, "SYN flood"):
		return "lbd: SYN flood"
	case strings.HasPrefix(s, "MAC"):
		return "floor: MAC+redirect"
	case strings.HasPrefix(s, "IPIP"):
		return "floor: IPIP+redirect"
	}
	return s
}

func xyOf(v plotter.Values) plotter.XYs {
	xy := make(plotter.XYs, len(v))
	for i, y := range v {
		xy[i].X, xy[i].Y = float64(i), y
	}
	return xy
}

func save(p *plot.Plot, dir, name string) error {
	for _, ext := range []string{"png", "svg"} {
		if err := p.Save(22*vg.Centimeter, 12*vg.Centimeter, filepath.Join(dir, name+"."+ext)); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string]float64) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	for i := 1; i < len(k); i++ {
		for j := i; j > 0 && k[j] < k[j-1]; j-- {
			k[j], k[j-1] = k[j-1], k[j]
		}
	}
	return k
}
