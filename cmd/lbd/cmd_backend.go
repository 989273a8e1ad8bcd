package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func cmdBackend(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "backend", "--interface IF --lb-sources PREFIXES --vips VIPS [--pin-dir DIR] [--api ADDR]")
	iface := fs.String("interface", "", "interface the tunnelled traffic arrives on and replies leave by")
	pinDir := fs.String("pin-dir", config.DefaultPinDir, "bpffs directory for pins")
	sources := fs.String("lb-sources", "", "comma-separated prefixes (or addresses) of the LB nodes' encapsulation sources; tunnelled packets from elsewhere are dropped (required)")
	vips := fs.String("vips", "", "comma-separated VIPs served here, ADDR (every port) or ADDR:PORT/tcp|udp ([ADDR]:PORT/… for IPv6); tunnelled packets for others are dropped (required)")
	local4 := fs.String("local4", "", "this backend's IPv4 address for 4in6 traffic (default: the interface's first)")
	tableSize := fs.Uint("flow-table-size", 1<<20, "entries of each reply flow table (IPv4, IPv6): a flow whose entry is evicted gets replies from this host's address, which its client drops; 104 bytes per IPv4 entry, 128 per IPv6. A restart with another size copies the flows")
	generic := fs.Bool("generic", false, "attach XDP in generic (skb) mode, for drivers without native XDP")
	detach := fs.Bool("detach-on-exit", false, "remove the programs and pins when stopping")
	stats := fs.Bool("stats", false, "print the counters of the backend programs pinned in --pin-dir as JSON and exit")
	api := fs.String("api", defaultBackendAPI, `address to serve /metrics and /healthz on ("": none); unauthenticated, keep it on loopback`)
	metrics := fs.String("metrics", "", "the same as --api: the address /metrics is served on")
	if _, ok := parseFlags(fs, args); !ok {
		return exitUsage
	}
	if *metrics != "" {
		*api = *metrics
	}
	if *stats {
		st, err := dataplane.ReadBackendHostStats(*pinDir)
		if err != nil {
			fmt.Fprintf(e.stderr, "lbd backend: %v\n", err)
			return exitFailure
		}
		mis, err := dataplane.ReadMisdelivered(*pinDir)
		if err != nil && !errors.Is(err, os.ErrNotExist) { // programs of an lbd that did not count them
			fmt.Fprintf(e.stderr, "lbd backend: %v\n", err)
			return exitFailure
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(backendStatsJSON(st, mis)); err != nil {
			fmt.Fprintf(e.stderr, "lbd backend: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	if *iface == "" {
		fmt.Fprintln(e.stderr, "lbd backend: --interface is required")
		return exitUsage
	}
	if *tableSize < 4096 || *tableSize > 1<<32-1 {
		fmt.Fprintf(e.stderr, "lbd backend: --flow-table-size %d: want 4096 to %d\n", *tableSize, uint32(1<<32-1))
		return exitUsage
	}
	cfg := dataplane.BackendHostConfig{Interface: *iface, PinDir: *pinDir, Generic: *generic, Logger: e.logger(),
		FlowTableSize: uint32(*tableSize)}
	var err error
	if cfg.LBSources, err = parsePrefixes(*sources); err != nil || len(cfg.LBSources) == 0 {
		fmt.Fprintf(e.stderr, "lbd backend: --lb-sources %q: %v\n", *sources, orRequired(err))
		return exitUsage
	}
	if cfg.VIPs, err = parseServedVIPs(*vips); err != nil || len(cfg.VIPs) == 0 {
		fmt.Fprintf(e.stderr, "lbd backend: --vips %q: %v\n", *vips, orRequired(err))
		return exitUsage
	}
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
	b, err := dataplane.OpenBackendHost(cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "lbd backend: %v\n", err)
		return exitFailure
	}
	c := b.Config()
	if *api != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(backendCollector{stats: b.Stats, misdelivered: b.Misdelivered}, collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		ln, err := net.Listen("tcp", *api)
		if err != nil {
			b.Close()
			fmt.Fprintf(e.stderr, "lbd backend: api listener: %v\n", err)
			return exitFailure
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("api server stopped", "err", err)
			}
		}()
		defer srv.Close()
	}
	log.Info("backend ready: xdp_decap on ingress, tc_egress on egress", "interface", c.Interface, "api", *api,
		"local4", c.Local4, "local6", c.Local6, "lb_sources", c.LBSources, "vips", c.VIPs,
		"flow_table_size", c.FlowTableSize, "flows_copied", b.Resized, "pin_dir", c.PinDir, "adopted", b.Adopted)
	notify(log, sd.SdNotifyReady, fmt.Sprintf("STATUS=decapsulating on %s for %d VIPs", c.Interface, len(c.VIPs)))
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
	notify(log, sd.SdNotifyStopping)
	if st, err := b.Stats(); err == nil {
		log.Info("backend counters", "decap", st.Counters["decap"].Packets,
			"restored", st.Counters["restored"].Packets, "decap_malformed", st.Counters["decap_malformed"].Packets,
			"refused_source", st.Counters["refused_source"].Packets, "refused_vip", st.Counters["refused_vip"].Packets,
			"decap_fragment", st.Counters["decap_fragment"].Packets, "decap_icmp_error", st.Counters["decap_icmp_error"].Packets,
			"refused_fragment", st.Counters["refused_fragment"].Packets)
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

// defaultBackendAPI is lbd backend's /metrics address: lbd run's default port plus one, so
// a host that runs both serves both.
const defaultBackendAPI = "127.0.0.1:9178"

func orRequired(err error) error {
	if err == nil {
		return errors.New("required: lbd backend accepts tunnelled packets only from the LB nodes and only for the VIPs it serves")
	}
	return err
}

// parsePrefixes reads comma-separated prefixes; a bare address is a /32 or /128.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q: not an address or prefix", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q: not an address or prefix", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// parseServedVIPs reads comma-separated VIPs: ADDR (all of it), or ADDR:PORT/PROTO with
// PROTO tcp or udp (port 0: every port of that protocol).
func parseServedVIPs(s string) ([]dataplane.VIPKey, error) {
	var out []dataplane.VIPKey
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, dataplane.VIPKey{Addr: a.Unmap()})
			continue
		}
		ap, proto, ok := strings.Cut(f, "/")
		var p uint8
		switch proto {
		case "tcp":
			p = 6
		case "udp":
			p = 17
		}
		addrPort, err := netip.ParseAddrPort(ap)
		if !ok || p == 0 || err != nil {
			return nil, fmt.Errorf("%q: want ADDR, or ADDR:PORT/tcp or /udp ([ADDR]:PORT/… for IPv6)", f)
		}
		out = append(out, dataplane.VIPKey{Addr: addrPort.Addr().Unmap(), Port: addrPort.Port(), Proto: p})
	}
	return out, nil
}

// backendStatsJSON is st and the misdelivery counters as --stats prints them: JSON object
// keys must be strings, so the per-VIP counters are keyed by "addr:port/proto"
// (dataplane.VIPKey.String). Encoding st itself fails on its VIPKey keys, and --stats used
// to print nothing.
func backendStatsJSON(st dataplane.BackendHostStats, misdelivered map[dataplane.VIPKey]dataplane.Counter) any {
	byVIP := func(m map[dataplane.VIPKey]dataplane.Counter) map[string]dataplane.Counter {
		out := make(map[string]dataplane.Counter, len(m))
		for k, c := range m {
			out[k.String()] = c
		}
		return out
	}
	return struct {
		Counters     map[string]dataplane.Counter
		Return       map[string]dataplane.Counter
		Misdelivered map[string]dataplane.Counter // TCP packets but SYNs for a VIP flow with no socket here
	}{st.Counters, byVIP(st.Return), byVIP(misdelivered)}
}
