package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

// BackendHostConfig is what a backend host's programs (decap at ingress, VIP restore at
// egress: the backend side of direct server return) are loaded with. Not to be confused
// with Backend, the LB's view of one backend of one VIP.
type BackendHostConfig struct {
	Interface string
	PinDir    string
	// this host's own addresses, for inner packets of the other family than the outer
	// header (4in6); zero: the interface's first address of that family
	Local4, Local6 netip.Addr
	// the LB nodes' encapsulation sources: tunnelled packets from elsewhere are refused
	LBSources []netip.Prefix
	// the VIPs served here: Port 0 stands for every port of Proto, Proto 0 for every
	// protocol of Addr; tunnelled packets for other VIPs are refused
	VIPs []VIPKey
	// FlowTableSize is the entries of each reply flow table (IPv4, IPv6); 0: MAX_DSR_FLOWS.
	// A restart with another size copies the pinned tables' flows into new ones.
	FlowTableSize uint32
	Generic       bool // generic (skb) mode XDP
	Logger        *slog.Logger
}

// BackendHost is a backend host's loaded xdp_decap and tc_egress programs and their maps.
type BackendHost struct {
	cfg     BackendHostConfig
	objs    backendhostObjects
	xdp     link.Link
	tcx     link.Link
	Adopted bool
	// Resized is how many flows were copied into reply flow tables of a new size at start
	Resized int

	resizing *resizing // tables of another size, until the last copy after the swap
}

const (
	backendHostDirPinName = "backend"
	decapLinkName         = "xdp_decap_link"
	egressLinkName        = "tc_egress_link"
)

var hostReasonNames = map[backendhostReason]string{
	backendhostReasonREASON_DECAP:            "decap",
	backendhostReasonREASON_DECAP_MALFORMED:  "decap_malformed",
	backendhostReasonREASON_RESTORED:         "restored",
	backendhostReasonREASON_REFUSED_SOURCE:   "refused_source",
	backendhostReasonREASON_REFUSED_VIP:      "refused_vip",
	backendhostReasonREASON_DECAP_FRAGMENT:   "decap_fragment",
	backendhostReasonREASON_DECAP_ICMP_ERROR: "decap_icmp_error",
	backendhostReasonREASON_REFUSED_FRAGMENT: "refused_fragment",
}

// OpenBackendHost loads and attaches the backend programs on cfg.Interface, adopting pinned
// maps and links of an earlier run.
func OpenBackendHost(cfg BackendHostConfig) (*BackendHost, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.LBSources) == 0 {
		return nil, errors.New("no LB node sources: every tunnelled packet would be refused (give the LB nodes' encapsulation source prefixes)")
	}
	if len(cfg.VIPs) == 0 {
		return nil, errors.New("no VIPs: every tunnelled packet would be refused (give the VIPs this backend serves)")
	}
	iface, err := netlink.LinkByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", cfg.Interface, err)
	}
	dir := filepath.Join(cfg.PinDir, backendHostDirPinName)
	if err := checkPinDir(cfg.PinDir); err != nil {
		return nil, err
	}
	if err := checkPinDir(dir); err != nil {
		return nil, err
	}
	if !cfg.Local4.IsValid() {
		cfg.Local4 = firstAddr(iface, netlink.FAMILY_V4)
	}
	if !cfg.Local6.IsValid() {
		cfg.Local6 = firstAddr(iface, netlink.FAMILY_V6)
	}
	b, err := loadBackendHost(cfg, dir)
	if err != nil {
		return nil, err
	}
	ifindex := iface.Attrs().Index
	flags := link.XDPDriverMode
	if cfg.Generic {
		flags = link.XDPGenericMode
	}
	xl, adoptedX, err := adoptOrAttach(filepath.Join(cfg.PinDir, decapLinkName), ifindex, b.objs.XdpDecap,
		func() (link.Link, error) {
			return link.AttachXDP(link.XDPOptions{Program: b.objs.XdpDecap, Interface: ifindex, Flags: flags})
		})
	if err != nil {
		b.objs.Close()
		return nil, fmt.Errorf("attach xdp_decap to %s: %w", cfg.Interface, err)
	}
	tl, adoptedT, err := adoptOrAttach(filepath.Join(cfg.PinDir, egressLinkName), ifindex, b.objs.TcEgress,
		func() (link.Link, error) {
			return link.AttachTCX(link.TCXOptions{Program: b.objs.TcEgress, Interface: ifindex, Attach: ebpf.AttachTCXEgress})
		})
	if err != nil {
		xl.Close()
		b.objs.Close()
		return nil, fmt.Errorf("attach tc_egress to %s: %w", cfg.Interface, err)
	}
	b.xdp, b.tcx, b.Adopted = xl, tl, adoptedX && adoptedT
	if b.resizing != nil {
		n, err := b.resizing.finish(b.flowMaps())
		b.resizing = nil
		if err != nil {
			cfg.Logger.Warn("reply flow tables of a new size: the last copy failed; flows recorded since the first copy may be lost", "err", err)
		}
		b.Resized = max(b.Resized, n)
	}
	return b, nil
}

// hostFlowTables are the backend's tables whose size is configurable.
var hostFlowTables = []table{
	tableOf[backendhostReplyKeyV4, backendhostReplyVal]("dsr_flows_v4"),
	tableOf[backendhostReplyKeyV6, backendhostReplyVal]("dsr_flows_v6"),
}

func (b *BackendHost) flowMaps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{"dsr_flows_v4": b.objs.DsrFlowsV4, "dsr_flows_v6": b.objs.DsrFlowsV6}
}

// FlowTables says how full the IPv4 and IPv6 reply flow tables are (it reads every key).
func (b *BackendHost) FlowTables() (v4, v6 TableFill, err error) {
	n4, err := countEntries[backendhostReplyKeyV4, backendhostReplyVal](b.objs.DsrFlowsV4)
	if err != nil {
		return v4, v6, fmt.Errorf("count ipv4 reply flows: %w", err)
	}
	n6, err := countEntries[backendhostReplyKeyV6, backendhostReplyVal](b.objs.DsrFlowsV6)
	if err != nil {
		return v4, v6, fmt.Errorf("count ipv6 reply flows: %w", err)
	}
	return TableFill{n4, int(b.objs.DsrFlowsV4.MaxEntries())}, TableFill{n6, int(b.objs.DsrFlowsV6.MaxEntries())}, nil
}

// loadBackendHost loads the programs and maps without attaching them; maps are pinned in
// dir, or private when dir is empty (tests).
func loadBackendHost(cfg BackendHostConfig, dir string) (*BackendHost, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	spec, err := loadBackendhost()
	if err != nil {
		return nil, fmt.Errorf("load backend spec: %w", err)
	}
	if cfg.Local4.IsValid() {
		if err := spec.Variables["local_v4"].Set(cfg.Local4.As4()); err != nil {
			return nil, fmt.Errorf("set local_v4: %w", err)
		}
	}
	if cfg.Local6.IsValid() {
		if err := spec.Variables["local_v6"].Set(cfg.Local6.As16()); err != nil {
			return nil, fmt.Errorf("set local_v6: %w", err)
		}
	}
	opts := &ebpf.CollectionOptions{}
	if dir != "" {
		opts.Maps.PinPath = dir
		if err := replaceStaleCounters(spec, dir, []string{"be_stats"}, cfg.Logger.Warn); err != nil {
			return nil, err
		}
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	rz, err := sizeTables(spec, dir, hostFlowTables, cfg.FlowTableSize, cfg.Logger.Warn)
	if err != nil {
		return nil, err
	}
	cfg.FlowTableSize = spec.Maps["dsr_flows_v4"].MaxEntries
	b := &BackendHost{cfg: cfg}
	if err := spec.LoadAndAssign(&b.objs, opts); err != nil {
		rz.close()
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			cfg.Logger.Error("verifier rejected the backend programs", "log", fmt.Sprintf("%+v", ve))
		}
		return nil, fmt.Errorf("load backend programs: %w", err)
	}
	if err := b.writeTrust(); err != nil {
		rz.close()
		b.objs.Close()
		return nil, err
	}
	n, err := rz.copyInto(b.flowMaps(), false)
	if err != nil {
		rz.close()
		b.objs.Close()
		return nil, fmt.Errorf("copy reply flows into tables of the new size: %w", err)
	}
	b.Resized, b.resizing = n, rz
	return b, nil
}

// writeTrust makes the pinned (or fresh) trust maps hold exactly cfg's LB sources and
// VIPs: the new entries first, then the stale ones go, so a restart refuses nothing that
// both the old and the new configuration accept.
func (b *BackendHost) writeTrust() error {
	v4 := map[backendhostLpmKeyV4]bool{}
	v6 := map[backendhostLpmKeyV6]bool{}
	for _, p := range b.cfg.LBSources {
		p = p.Masked()
		a := p.Addr().Unmap()
		if a.Is4() {
			k := backendhostLpmKeyV4{Prefixlen: uint32(p.Bits())}
			b4 := a.As4()
			k.Addr = le(b4[:])
			if p.Addr().Is4In6() {
				k.Prefixlen -= 96
			}
			v4[k] = true
			continue
		}
		k := backendhostLpmKeyV6{Prefixlen: uint32(p.Bits())}
		b16 := a.As16()
		for i := range 4 {
			k.Addr[i] = le(b16[4*i:])
		}
		v6[k] = true
	}
	vips := map[backendhostVipKey]bool{}
	for _, v := range b.cfg.VIPs {
		vips[backendhostVipKey(vipKeyTo(v))] = true
	}
	if err := syncSet(b.objs.LbSourcesV4, v4); err != nil {
		return fmt.Errorf("write LB sources: %w", err)
	}
	if err := syncSet(b.objs.LbSourcesV6, v6); err != nil {
		return fmt.Errorf("write LB sources: %w", err)
	}
	if err := syncSet(b.objs.ServedVips, vips); err != nil {
		return fmt.Errorf("write served VIPs: %w", err)
	}
	return nil
}

// syncSet makes m's keys exactly want (values 1): puts first, then deletes.
func syncSet[K comparable](m *ebpf.Map, want map[K]bool) error {
	for k := range want {
		if err := m.Put(k, uint32(1)); err != nil {
			return err
		}
	}
	var stale []K
	var k K
	var v uint32
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// Config returns the configuration the programs were loaded with (defaults filled in).
func (b *BackendHost) Config() BackendHostConfig { return b.cfg }

// BackendHostStats is a snapshot of a backend host's counters.
type BackendHostStats struct {
	Counters map[string]Counter // decap, decap_malformed, restored
	Return   map[VIPKey]Counter // replies restored to each VIP (DSR traffic)
}

// Stats sums the per-CPU counters.
func (b *BackendHost) Stats() (BackendHostStats, error) {
	st := BackendHostStats{Counters: map[string]Counter{}, Return: map[VIPKey]Counter{}}
	for id, name := range hostReasonNames {
		var per []backendhostCounter
		if err := b.objs.BeStats.Lookup(uint32(id), &per); err != nil {
			return st, fmt.Errorf("read counter %s: %w", name, err)
		}
		var c Counter
		for _, p := range per {
			c.Packets += p.Packets
			c.Bytes += p.Bytes
		}
		st.Counters[name] = c
	}
	var k backendhostVipKey
	var per []backendhostCounter
	it := b.objs.ReturnStats.Iterate()
	for it.Next(&k, &per) {
		key := VIPKey{Addr: addrFrom(k.Addr.V6, k.Family == afInet6), Port: htons(k.Port), Proto: k.Proto}
		var c Counter
		for _, p := range per {
			c.Packets += p.Packets
			c.Bytes += p.Bytes
		}
		st.Return[key] = c
	}
	return st, it.Err()
}

// Close releases this process's hold; the pinned links keep the programs running.
func (b *BackendHost) Close() error {
	if b.resizing != nil {
		b.resizing.close()
	}
	var errs []error
	for _, l := range []link.Link{b.xdp, b.tcx} {
		if l != nil {
			errs = append(errs, l.Close())
		}
	}
	return errors.Join(append(errs, b.objs.Close())...)
}

// Detach removes both programs and every pin made for them.
func (b *BackendHost) Detach() error {
	errs := []error{b.xdp.Unpin(), b.tcx.Unpin()}
	errs = append(errs, b.Close())
	spec, err := loadBackendhost()
	if err == nil {
		errs = append(errs, unpinAll(filepath.Join(b.cfg.PinDir, backendHostDirPinName), pinnedNames(spec)))
	}
	return errors.Join(errs...)
}

// ReadBackendHostStats reads the counters of backend programs pinned under pinDir by a
// running (or stopped) `lbd backend`.
func ReadBackendHostStats(pinDir string) (BackendHostStats, error) {
	dir := filepath.Join(pinDir, backendHostDirPinName)
	stats, err := ebpf.LoadPinnedMap(filepath.Join(dir, "be_stats"), nil)
	if err != nil {
		return BackendHostStats{}, fmt.Errorf("open pinned backend counters in %s: %w", dir, err)
	}
	defer stats.Close()
	ret, err := ebpf.LoadPinnedMap(filepath.Join(dir, "return_stats"), nil)
	if err != nil {
		return BackendHostStats{}, fmt.Errorf("open pinned return counters in %s: %w", dir, err)
	}
	defer ret.Close()
	b := &BackendHost{objs: backendhostObjects{backendhostMaps: backendhostMaps{BeStats: stats, ReturnStats: ret}}}
	return b.Stats()
}

// DetachPinnedBackendHost removes backend programs left pinned in pinDir by an `lbd backend`
// that is no longer running.
func DetachPinnedBackendHost(pinDir string) error {
	var errs []error
	for _, n := range []string{decapLinkName, egressLinkName} {
		if l, err := link.LoadPinnedLink(filepath.Join(pinDir, n), nil); err == nil {
			errs = append(errs, l.Unpin(), l.Close())
		}
	}
	spec, err := loadBackendhost()
	if err != nil {
		return err
	}
	errs = append(errs, unpinAll(filepath.Join(pinDir, backendHostDirPinName), pinnedNames(spec)))
	return errors.Join(errs...)
}
