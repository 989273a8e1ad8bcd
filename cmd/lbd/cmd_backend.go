package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/config"
)

func cmdBackend(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "backend", "--interface IF [--pin-dir DIR]")
	iface := fs.String("interface", "", "interface the tunnelled traffic arrives on and replies leave by")
	pinDir := fs.String("pin-dir", config.DefaultPinDir, "bpffs directory for pins")
	local4 := fs.String("local4", "", "this backend's IPv4 address for 4in6 traffic (default: the interface's first)")
	generic := fs.Bool("generic", false, "attach XDP in generic (skb) mode, for drivers without native XDP")
	detach := fs.Bool("detach-on-exit", false, "remove the programs and pins when stopping")
	stats := fs.Bool("stats", false, "print the counters of the backend programs pinned in --pin-dir as JSON and exit")
	if _, ok := parseFlags(fs, args); !ok {
		return exitUsage
	}
	if *stats {
		st, err := dataplane.ReadBackendStats(*pinDir)
		if err != nil {
			fmt.Fprintf(e.stderr, "lbd backend: %v\n", err)
			return exitFailure
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
		return exitOK
	}
	if *iface == "" {
		fmt.Fprintln(e.stderr, "lbd backend: --interface is required")
		return exitUsage
	}
	cfg := dataplane.BackendConfig{Interface: *iface, PinDir: *pinDir, Generic: *generic, Logger: e.logger()}
	if *local4 != "" {
		a, err := netip.ParseAddr(*local4)
		if err != nil || !a.Is4() {
			fmt.Fprintf(e.stderr, "lbd backend: --local4 %q: not an IPv4 address\n", *local4)
			return exitUsage
		}
		cfg.Local4 = a
	}
	log := cfg.Logger
	sigs, stop := e.signals()
	defer stop()
	b, err := dataplane.OpenBackend(cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd backend: %v\n", err)
		return exitFailure
	}
	c := b.Config()
	log.Info("backend ready: xdp_decap on ingress, tc_egress on egress", "interface", c.Interface,
		"local4", c.Local4, "local6", c.Local6, "pin_dir", c.PinDir, "adopted", b.Adopted)
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case s := <-sigs:
			if s != syscall.SIGHUP {
				break wait
			}
		}
	}
	if st, err := b.Stats(); err == nil {
		log.Info("backend counters", "decap", st.Counters["decap"].Packets,
			"restored", st.Counters["restored"].Packets, "decap_malformed", st.Counters["decap_malformed"].Packets)
	}
	if *detach {
		if err := b.Detach(); err != nil {
			log.Error("detach", "err", err)
			return exitFailure
		}
		log.Info("backend programs detached and unpinned")
		return exitOK
	}
	b.Close()
	log.Info("stopped; the backend programs keep running from their pinned links")
	return exitOK
}
