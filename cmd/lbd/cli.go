package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// env is everything a subcommand touches outside itself, so each one can run in-process
// in a test.
type env struct {
	stdout, stderr io.Writer
	// signals delivers SIGINT/SIGTERM (stop) and SIGHUP (reload) to long-running commands
	signals func() (<-chan os.Signal, func())
	// exe is the lbd binary, for commands that start other lbd processes (demo)
	exe func() (string, error)
}

func newEnv() *env {
	return &env{
		stdout: os.Stdout,
		stderr: os.Stderr,
		signals: func() (<-chan os.Signal, func()) {
			ch := make(chan os.Signal, 4)
			signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
			return ch, func() { signal.Stop(ch) }
		},
		exe: os.Executable,
	}
}

func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// exit codes
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // bad flags or an invalid config
)

type command struct {
	name, args, summary string
	run                 func(ctx context.Context, e *env, args []string) int
}

func commands() []command {
	return []command{
		{"run", "--config FILE [--pin-dir DIR]", "run an LB node: attach xdp_lb, serve the VIPs of FILE", cmdRun},
		{"backend", "--interface IF --lb-sources PREFIXES --vips VIPS [--pin-dir DIR] [--api ADDR]", "run a backend: decap on ingress, restore the VIP on egress (DSR)", cmdBackend},
		{"validate", "FILE", "check a config; print its VIPs or its errors (file:line:col)", cmdValidate},
		{"plan", "OLD.yaml NEW.yaml [--json]", "show what a config change does to each VIP's flows (read-only)", cmdPlan},
		{"status", "[--api ADDR] [--json]", "show a running lbd's VIPs, backends and counters", cmdStatus},
		{"explain", "[--api ADDR] [--json] PROTO SRC:PORT DST:PORT", "which backend a flow goes to, and why (read-only)", cmdExplain},
		{"detach", "--pin-dir DIR", "remove the programs and pins an lbd left behind", cmdDetach},
		{"demo", "", "raise sandbox fleets in network namespaces: balance, fail over, scale out over BGP", cmdDemo},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "lbd: an XDP/TC layer-4 load balancer with direct server return")
	fmt.Fprintln(w, "\nusage: lbd COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %-34s %s\n", c.name, c.args, c.summary)
	}
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "--help":
		usage(e.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "lbd: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return exitUsage
}

// newFlags is a FlagSet that reports to e.stderr and returns errors instead of exiting.
func newFlags(e *env, name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet("lbd "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: lbd %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, allowing flags after positional arguments; it returns the
// positionals, or ok=false after printing the error. -h and -help print the usage and
// count as a usage error too (exit 2), as for any command line the command did not run.
func parseFlags(fs *flag.FlagSet, args []string) (pos []string, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			return nil, false
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, true
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
