// Command conns measures new TCP connections per second through a VIP: a client runs wrk
// (HTTP/1.1 with "Connection: close", so every request is a new connection) against the
// same three backends reached five ways (setups.go): directly, through lbd, through a
// trivial XDP forwarder (the floor: what the extra hop costs without lbd's logic), through
// HAProxy in TCP mode and through nftables DNAT. Each measurement gets a fresh fleet in
// network namespaces (internal/testbed); rounds visit every setup in turn, each round in
// another order, so drift on the machine hits them alike; the report gives medians, the
// spread over the rounds and the ratios of lbd to the others, round by round.
//
// A last pass, outside the figures, runs lbd and the floor once more with the kernel's BPF
// statistics on, to say how much of a connection's CPU time their programs take.
//
//	go run ./bench/conns -lbd bin/lbd [-rounds 5] [-duration 5s] [-json FILE]
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lbdproj/lbd/bench/internal/host"
	"github.com/lbdproj/lbd/internal/testbed"
)

const prefix = "lbdcr"

var (
	lbdBin   = flag.String("lbd", "bin/lbd", "the lbd binary")
	rounds   = flag.Int("rounds", 5, "rounds; each measures every setup once, on a fresh fleet")
	duration = flag.Duration("duration", 5*time.Second, "measured time of each measurement")
	warmup   = flag.Duration("warmup", time.Second, "wrk's run before each measurement (not counted)")
	conns    = flag.Int("connections", 32, "wrk's connections (-c)")
	threads  = flag.Int("threads", 2, "wrk's threads (-t)")
	only     = flag.String("setups", "", "comma-separated setups to measure (default all: direct,lbd,floor,haproxy,nftables)")
	diag     = flag.Bool("diag", true, "after the rounds, measure lbd and the floor once more with BPF statistics on")
	jsonOut  = flag.String("json", "", "also write the results to this file as JSON")
	serve    = flag.String("serve", "", "internal: serve HTTP on this address (a backend's server)")
	name     = flag.String("name", "", "internal: the server's name, its answer")
)

// self is this program, which the backends run as their HTTP server (-serve).
var self, _ = os.Executable()

var interrupted atomic.Bool

func main() {
	flag.Parse()
	if *serve != "" {
		serveHTTP(*serve, *name)
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "conns: needs root (namespaces, veths, XDP)")
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for range sig {
			if !interrupted.Swap(true) {
				fmt.Fprintln(os.Stderr, "conns: stopping after this measurement and cleaning up")
			}
		}
	}()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "conns: %v\n", err)
		os.Exit(1)
	}
}

// serveHTTP answers every request with the server's name: a backend's service. Go's
// server closes the connection after the answer when the request says "Connection: close".
func serveHTTP(addr, name string) {
	body := []byte(name + "\n")
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) })}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("serving")
	fmt.Fprintln(os.Stderr, srv.Serve(ln))
}

func run() error {
	sel, err := selected()
	if err != nil {
		return err
	}
	if *duration < time.Second || *warmup < time.Second || *duration%time.Second != 0 || *warmup%time.Second != 0 {
		return errors.New("-duration and -warmup: whole seconds, at least 1s (wrk's unit)")
	}
	if *rounds < 1 || *conns < 1 || *threads < 1 || *threads > *conns {
		return errors.New("-rounds, -connections and -threads must be positive, threads at most connections")
	}
	if _, err := os.Stat(*lbdBin); err != nil {
		return fmt.Errorf("-lbd: %w (build it: make build)", err)
	}
	for _, tool := range []string{"wrk", "haproxy", "nft"} {
		if _, err := execLookPath(tool); err != nil {
			return fmt.Errorf("%s not found (scripts/deps.sh installs it): %w", tool, err)
		}
	}
	testbed.Cleanup(prefix) // leftovers of killed runs; live runs hold their lock
	res := Results{
		Kernel: host.Kernel(), CPU: host.CPUModel(), CPUs: runtime.NumCPU(), Rounds: *rounds,
		Seconds: duration.Seconds(), Connections: *conns, Threads: *threads, Backends: 3,
		Load: wrkCommand("http://" + vip.String() + "/"),
	}
	printHeader(res, sel)
	byKey := map[string]*SetupResult{}
	for _, s := range sel {
		sr := &SetupResult{Key: s.key, Name: s.name, Description: s.desc}
		byKey[s.key] = sr
		res.Setups = append(res.Setups, sr)
	}
	start := time.Now()
	for r := range *rounds {
		// each round starts one further along: no setup always follows the same one
		order := append(slices.Clone(sel[r%len(sel):]), sel[:r%len(sel)]...)
		fmt.Fprintf(os.Stderr, "round %d/%d:", r+1, *rounds)
		for _, s := range order {
			if interrupted.Load() {
				return errors.New("interrupted")
			}
			m, err := measure(s, false)
			if err != nil {
				fmt.Fprintln(os.Stderr)
				return fmt.Errorf("%s, round %d: %w", s.name, r+1, err)
			}
			m.Round = r + 1
			byKey[s.key].Runs = append(byKey[s.key].Runs, m)
			fmt.Fprintf(os.Stderr, " %s %.0f/s", s.key, m.ConnPerSec)
		}
		fmt.Fprintln(os.Stderr)
	}
	for _, sr := range res.Setups {
		sr.summarize()
	}
	res.Ratios = ratios(byKey)
	if *diag {
		for _, s := range sel {
			if s.key != "lbd" && s.key != "floor" {
				continue
			}
			m, err := measure(s, true)
			if err != nil {
				return fmt.Errorf("%s with BPF statistics: %w", s.name, err)
			}
			res.Diagnosis = append(res.Diagnosis, Diagnosis{Key: s.key, Name: s.name, Run: m})
		}
	}
	res.Took = time.Since(start).Round(time.Second).String()
	printResults(res)
	if *jsonOut != "" {
		j, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(*jsonOut, append(j, '\n'), 0o644)
	}
	return nil
}

func selected() ([]setup, error) {
	if *only == "" {
		return setups, nil
	}
	var out []setup
	for k := range strings.SplitSeq(*only, ",") {
		i := slices.IndexFunc(setups, func(s setup) bool { return s.key == strings.TrimSpace(k) })
		if i < 0 {
			return nil, fmt.Errorf("-setups: no setup %q", k)
		}
		out = append(out, setups[i])
	}
	return out, nil
}

// measure raises s on a fresh fleet, warms it up and measures it with wrk; with bpfStats
// the kernel's BPF statistics are on meanwhile and the programs' run time is read.
func measure(s setup, bpfStats bool) (Run, error) {
	st, err := newStand()
	if err != nil {
		return Run{}, err
	}
	m, err := measureOn(st, s, bpfStats)
	return m, errors.Join(err, st.close())
}

func measureOn(st *stand, s setup, bpfStats bool) (Run, error) {
	for _, p := range st.procs["servers"] {
		if err := p.WaitForLog("serving", 10*time.Second); err != nil {
			return Run{}, fmt.Errorf("server on %s: %w", p.Host.Name, err)
		}
	}
	if err := s.raise(st); err != nil {
		return Run{}, err
	}
	if err := st.waitServing(s.serving(st), 30*time.Second); err != nil {
		return Run{}, err
	}
	if _, err := runWrk(st.fleet.Client, *warmup); err != nil {
		return Run{}, fmt.Errorf("warm-up: %w", err)
	}
	return measureLoad(st, bpfStats)
}
