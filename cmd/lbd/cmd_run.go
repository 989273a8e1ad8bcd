package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/lbdproj/lbd/internal/daemon"
	"github.com/lbdproj/lbd/pkg/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// loadConfig reads and validates path, applying flag overrides, and prints warnings.
func loadConfig(e *env, log *slog.Logger, path, pinDir string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if pinDir != "" {
		cfg.Node.PinDir = pinDir
	}
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w)
	}
	return cfg, nil
}

func cmdRun(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "run", "--config FILE [--pin-dir DIR]")
	path := fs.String("config", "", "config file (YAML)")
	pinDir := fs.String("pin-dir", "", "bpffs directory for pins (overrides node.pin_dir)")
	detach := fs.Bool("detach-on-exit", false, "remove xdp_lb and its pins when stopping (default: keep forwarding until the next lbd)")
	watch := fs.Duration("watch", 2*time.Second, "how often to check the config file for changes (0: only on SIGHUP)")
	if _, ok := parseFlags(fs, args); !ok {
		return exitUsage
	}
	if *path == "" {
		fmt.Fprintln(e.stderr, "lbd run: --config is required")
		return exitUsage
	}
	log := e.logger()
	lastMod := modTime(*path) // before reading: a write after this is seen as a change
	cfg, err := loadConfig(e, log, *path, *pinDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd run: invalid config:\n%v\n", err)
		return exitUsage
	}
	sigs, stop := e.signals()
	defer stop()

	reg := prometheus.NewRegistry()
	d, err := daemon.New(ctx, cfg, daemon.Options{Logger: log, Registerer: reg})
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd run: %v\n", err)
		return exitFailure
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	go func() {
		if err := d.Run(runCtx); err != nil {
			log.Error("daemon loop stopped", "err", err)
		}
	}()
	reg.MustRegister(d.Collector(), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reloads := newReloadMetrics(reg, time.Now())
	ln, err := net.Listen("tcp", cfg.Node.APIAddr.String())
	if err != nil {
		d.Close()
		fmt.Fprintf(e.stderr, "lbd run: api listener: %v\n", err)
		return exitFailure
	}
	srv := &http.Server{Handler: d.Handler(reg), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("api server stopped", "err", err)
		}
	}()
	defer srv.Close()
	log.Info("lbd serving", "vips", len(cfg.VIPs), "api", ln.Addr().String(), "config", *path)
	// daemon.New attached xdp_lb and wrote every VIP with its ring: the VIPs answer now
	notify(log, sd.SdNotifyReady, fmt.Sprintf("STATUS=serving %d VIPs, config %s", len(cfg.VIPs), cfg.Digest()[:12]))

	reload := func(why string) {
		notifyReloading(log)
		lastMod = modTime(*path)
		next, err := loadConfig(e, log, *path, *pinDir)
		if err == nil {
			err = d.Apply(ctx, next)
		}
		reloads.observe(err, time.Now())
		if err != nil {
			log.Error("reload refused; still serving the previous config", "why", why, "err", err)
			// the old config keeps serving: ready again, and the status says why
			notify(log, sd.SdNotifyReady, "STATUS=reload refused, still serving the previous config: "+firstLine(err.Error()))
			return
		}
		log.Info("config reloaded", "why", why, "vips", len(next.VIPs), "digest", next.Digest()[:12])
		notify(log, sd.SdNotifyReady, fmt.Sprintf("STATUS=serving %d VIPs, config %s", len(next.VIPs), next.Digest()[:12]))
	}
	var tick <-chan time.Time
	if *watch > 0 {
		t := time.NewTicker(*watch)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return shutdown(e, log, d, *detach)
		case s := <-sigs:
			if s == syscall.SIGHUP {
				reload("SIGHUP")
				continue
			}
			log.Info("stopping", "signal", s.String())
			return shutdown(e, log, d, *detach)
		case <-tick:
			if !modTime(*path).Equal(lastMod) {
				reload("file changed")
			}
		}
	}
}

func modTime(path string) time.Time {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// firstLine is s up to its first newline: a config's errors come one per line.
func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

func shutdown(e *env, log *slog.Logger, d *daemon.Daemon, detach bool) int {
	notify(log, sd.SdNotifyStopping)
	if detach {
		if err := d.Detach(); err != nil {
			log.Error("detach", "err", err)
			return exitFailure
		}
		log.Info("xdp_lb detached and unpinned")
		return exitOK
	}
	if err := d.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		log.Error("close", "err", err)
	}
	log.Info("stopped; xdp_lb keeps forwarding from its pinned link until the next lbd run or lbd detach",
		"pin_dir", d.Config().Node.PinDir)
	return exitOK
}
