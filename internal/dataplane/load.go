// load.go: loading xdp_lb and its maps (pinned or private) with the load-time variables set.

package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
)

// loadLB loads the program and its maps without attaching them: pinned under
// cfg.PinDir/lb when PinDir is set, private otherwise (tests, benchmarks).
func loadLB(cfg Config) (*LB, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("load xdp_lb spec: %w", err)
	}
	if err := setLBVars(spec, cfg); err != nil {
		return nil, err
	}
	opts := &ebpf.CollectionOptions{}
	mapDir := ""
	if cfg.PinDir != "" {
		mapDir = filepath.Join(cfg.PinDir, lbDirPinName)
		if err := checkPinDir(mapDir); err != nil {
			return nil, err
		}
		opts.Maps.PinPath = mapDir
		if err := replaceStaleCounters(spec, mapDir, []string{"stats", "events", "flowsync_events"}, cfg.Logger.Warn); err != nil {
			return nil, err
		}
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	rz, err := sizeTables(spec, mapDir, lbFlowTables, cfg.FlowTableSize, cfg.Logger.Warn)
	if err != nil {
		return nil, err
	}
	cfg.FlowTableSize = spec.Maps["flows_v4"].MaxEntries
	lb := &LB{cfg: cfg, vips: map[VIPKey]vipState{}, pairs: map[pairKey]beSlot{}}
	if err := spec.LoadAndAssign(&lb.objs, opts); err != nil {
		rz.close()
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			cfg.Logger.Error("verifier rejected xdp_lb", "log", fmt.Sprintf("%+v", ve))
		}
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("load xdp_lb: maps pinned in %s are from an incompatible lbd (run `lbd detach`): %w", mapDir, err)
		}
		return nil, fmt.Errorf("load xdp_lb: %w", err)
	}
	if err := lb.recover(); err != nil {
		rz.close()
		lb.objs.Close()
		return nil, fmt.Errorf("read pinned state: %w", err)
	}
	// the bulk of a resize, while the old program still runs; the rest after the swap
	n, err := rz.copyInto(lb.flowMaps(), false)
	if err != nil {
		rz.close()
		lb.objs.Close()
		return nil, fmt.Errorf("copy flows into tables of the new size: %w", err)
	}
	lb.Resized, lb.resizing = n, rz
	return lb, nil
}

func setLBVars(spec *ebpf.CollectionSpec, cfg Config) error {
	vars := map[string]any{
		"hash_seed":           cfg.HashSeed,
		"encap_mtu":           uint32(cfg.MTU),
		"syn_flood_threshold": cfg.SynFloodThreshold,
	}
	if cfg.EncapSource.IsValid() {
		if !cfg.EncapSource.Is4() {
			return fmt.Errorf("encap source %s: not an IPv4 address", cfg.EncapSource)
		}
		vars["encap_src_v4"] = cfg.EncapSource.As4()
	}
	if cfg.EncapSource6.IsValid() {
		vars["encap_src_v6"] = cfg.EncapSource6.As16()
	}
	if p := cfg.EncapPrefix; p.IsValid() {
		if !p.Addr().Is4() || p.Bits() < 8 || p.Bits() > 30 {
			return fmt.Errorf("encap source prefix %s: want an IPv4 prefix from /8 to /30", p)
		}
		vars["encap_prefix_v4"] = p.Masked().Addr().As4()
		vars["encap_prefix_v4_host"] = uint32(1)<<(32-p.Bits()) - 1
	}
	if p := cfg.EncapPrefix6; p.IsValid() {
		if !p.Addr().Is6() || p.Bits() < 96 || p.Bits() > 126 {
			return fmt.Errorf("encap source prefix %s: want an IPv6 prefix from /96 to /126", p)
		}
		vars["encap_prefix_v6"] = p.Masked().Addr().As16()
		vars["encap_prefix_v6_host"] = uint32(1)<<(128-p.Bits()) - 1
	}
	if cfg.MAC != nil {
		if len(cfg.MAC) != 6 {
			return fmt.Errorf("interface address %s: not an Ethernet (6-byte) address", cfg.MAC)
		}
		vars["lb_mac"] = [6]byte(cfg.MAC)
	}
	for name, v := range vars {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("xdp_lb has no variable %q", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

func firstAddr(l netlink.Link, family int) netip.Addr {
	addrs, err := netlink.AddrList(l, family)
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && !ip.IsLinkLocalUnicast() {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

var lbSpecOnce = sync.OnceValues(loadLb)

func (lb *LB) innerSpec() *ebpf.MapSpec {
	spec, err := lbSpecOnce()
	if err != nil {
		panic(err) // the embedded object parsed once already in OpenLB
	}
	return spec.Maps["rings"].InnerMap.Copy()
}
