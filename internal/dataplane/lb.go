// Package dataplane owns the BPF objects: it loads, pins and attaches the programs and
// speaks to their maps. Everything else in lbd talks to it in terms of VIPs, backends and
// rings; no other package sees a file descriptor.
package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

// Limits of the data path, mirrored from bpf/lb_consts.h (checked by a test against the
// object's map sizes).
const (
	MaxVIPs     = 1024
	MaxBackends = 16384 // VIP-backend pairs
)

const (
	vipFlagGUE    = 1 << 0
	beFlagV6      = 1 << 0
	beFlagDown    = 1 << 1
	afInet        = 4
	afInet6       = 6
	xdpLinkName   = "xdp_lb_link"
	probeLinkName = "tc_probe_link"
	probeMark     = 0x4c420000
	lbDirPinName  = "lb"
)

// VIPKey identifies a VIP: address, port (0 = every port) and IP protocol.
type VIPKey struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

func (k VIPKey) String() string {
	p := "tcp"
	if k.Proto == 17 {
		p = "udp"
	}
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.Addr, k.Port), p)
}

// Backend is one backend of one VIP as the data path needs it.
type Backend struct {
	Addr    netip.Addr
	DstMAC  net.HardwareAddr // next hop toward the backend
	SrcMAC  net.HardwareAddr // the sending interface's address
	Ifindex int              // 0: send back out of the receiving interface (XDP_TX)
	Down    bool             // established flows on it are re-hashed at once
}

// VIP is a VIP's whole data-path state. Ring holds, per slot, an index into Backends;
// backends not in the ring (drained, down) still get entries so their flows are judged.
type VIP struct {
	Key      VIPKey
	Backends []Backend
	Ring     []uint32
	GUE      bool // encapsulate in UDP (GUE, direct IP) instead of IPIP
}

// GUEPort is the UDP destination port of GUE packets (bpf/lb_consts.h GUE_PORT); backends
// decapsulate what arrives on it.
const GUEPort = 6080

// Config is what the LB program is loaded with.
type Config struct {
	Interface    string
	PinDir       string           // on a bpffs; maps and the XDP link are pinned below it
	HashSeed     uint32           // the same on every LB node
	EncapSource  netip.Addr       // zero: the interface's first IPv4 address
	EncapSource6 netip.Addr       // zero: the interface's first global IPv6 address
	MTU          int              // zero: the interface's MTU
	MAC          net.HardwareAddr // the interface's address, which ICMP answers leave from; nil: the interface's
	Generic      bool             // attach in generic (skb) mode instead of driver mode
	Logger       *slog.Logger
}

type vipState struct {
	id, ringID uint32
	ringSize   int
}

type pairKey struct {
	vip  VIPKey
	addr netip.Addr
}

type beSlot struct {
	id, gen uint32
}

// LB is the loaded and attached xdp_lb program and its maps.
type LB struct {
	mu      sync.Mutex
	cfg     Config
	objs    lbObjects
	link    link.Link
	probe   link.Link // tc_probe on egress
	ifindex int
	Adopted bool // the program was swapped into a link a previous lbd left pinned

	vips    map[VIPKey]vipState
	pairs   map[pairKey]beSlot
	nextGen uint32
	filter  []uint64            // vip_filter as last written
	addrs   map[netip.Addr]bool // vip_addrs as last written
}

// OpenLB loads xdp_lb, adopting maps pinned by an earlier lbd (so flows survive a
// restart), and attaches it to the interface or swaps it into the pinned link.
func OpenLB(cfg Config) (*LB, error) {
	iface, err := netlink.LinkByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", cfg.Interface, err)
	}
	if err := checkPinDir(cfg.PinDir); err != nil {
		return nil, err
	}
	if cfg.MTU == 0 {
		cfg.MTU = iface.Attrs().MTU
	}
	if cfg.MAC == nil {
		cfg.MAC = iface.Attrs().HardwareAddr
	}
	if !cfg.EncapSource.IsValid() {
		cfg.EncapSource = firstAddr(iface, netlink.FAMILY_V4)
	}
	if !cfg.EncapSource6.IsValid() {
		cfg.EncapSource6 = firstAddr(iface, netlink.FAMILY_V6)
	}
	lb, err := loadLB(cfg)
	if err != nil {
		return nil, err
	}
	lb.ifindex = iface.Attrs().Index
	flags := link.XDPDriverMode
	if cfg.Generic {
		flags = link.XDPGenericMode
	}
	l, adopted, err := adoptOrAttach(filepath.Join(cfg.PinDir, xdpLinkName), lb.ifindex, lb.objs.XdpLb,
		func() (link.Link, error) {
			return link.AttachXDP(link.XDPOptions{Program: lb.objs.XdpLb, Interface: lb.ifindex, Flags: flags})
		})
	if err != nil {
		lb.objs.Close()
		return nil, fmt.Errorf("attach xdp to %s: %w", cfg.Interface, err)
	}
	lb.link, lb.Adopted = l, adopted
	pl, _, err := adoptOrAttach(filepath.Join(cfg.PinDir, probeLinkName), lb.ifindex, lb.objs.TcProbe,
		func() (link.Link, error) {
			return link.AttachTCX(link.TCXOptions{Program: lb.objs.TcProbe, Interface: lb.ifindex, Attach: ebpf.AttachTCXEgress})
		})
	if err != nil {
		lb.link.Close()
		lb.objs.Close()
		return nil, fmt.Errorf("attach tc_probe to %s egress: %w", cfg.Interface, err)
	}
	lb.probe = pl
	return lb, nil
}

// ProbeMark is the socket mark that makes tc_probe encapsulate a probe's packets to the
// backend addr of VIP key, exactly as client traffic to that backend is; ok is false when
// the backend is not in the data path.
func (lb *LB) ProbeMark(key VIPKey, addr netip.Addr) (mark uint32, ok bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	slot, ok := lb.pairs[pairKey{key, addr}]
	return probeMark | slot.id, ok
}

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
		if err := replaceStaleCounters(spec, mapDir, []string{"stats", "events"}, cfg.Logger.Warn); err != nil {
			return nil, err
		}
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	lb := &LB{cfg: cfg, vips: map[VIPKey]vipState{}, pairs: map[pairKey]beSlot{}}
	if err := spec.LoadAndAssign(&lb.objs, opts); err != nil {
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
		lb.objs.Close()
		return nil, fmt.Errorf("read pinned state: %w", err)
	}
	return lb, nil
}

func setLBVars(spec *ebpf.CollectionSpec, cfg Config) error {
	vars := map[string]any{
		"hash_seed": cfg.HashSeed,
		"encap_mtu": uint32(cfg.MTU),
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

// recover rebuilds the id tables from pinned maps so that a restarted lbd reuses the same
// VIP, ring and backend ids and the recorded flows keep pointing at the right backends.
func (lb *LB) recover() error {
	byID := map[uint32]VIPKey{}
	var k lbVipKey
	var m lbVipMeta
	it := lb.objs.Vips.Iterate()
	for it.Next(&k, &m) {
		key := vipKeyFrom(k)
		inner, err := lb.ringMap(m.RingId)
		size := 0
		if err == nil {
			size = int(inner.MaxEntries())
			inner.Close()
		}
		lb.vips[key] = vipState{id: m.VipId, ringID: m.RingId, ringSize: size}
		byID[m.VipId] = key
	}
	if err := it.Err(); err != nil {
		return err
	}
	lb.addrs = map[netip.Addr]bool{}
	var ak lbVipKey
	var one uint32
	ait := lb.objs.VipAddrs.Iterate()
	for ait.Next(&ak, &one) {
		lb.addrs[vipKeyFrom(ak).Addr] = true
	}
	if err := ait.Err(); err != nil {
		return err
	}
	lb.filter = make([]uint64, vipFilterWords)
	for w := range lb.filter {
		if err := lb.objs.VipFilter.Lookup(uint32(w), &lb.filter[w]); err != nil {
			return err
		}
	}
	var be lbBackend
	for id := uint32(1); id < MaxBackends; id++ {
		if err := lb.objs.Backends.Lookup(id, &be); err != nil {
			return err
		}
		if be.Gen == 0 {
			continue
		}
		vk, ok := byID[be.VipId]
		if !ok {
			continue
		}
		lb.pairs[pairKey{vk, addrFrom(be.Addr.V6, be.Flags&beFlagV6 != 0)}] = beSlot{id, be.Gen}
		lb.nextGen = max(lb.nextGen, be.Gen)
	}
	return nil
}

func (lb *LB) ringMap(ringID uint32) (*ebpf.Map, error) {
	var innerID ebpf.MapID
	if err := lb.objs.Rings.Lookup(ringID, &innerID); err != nil {
		return nil, err
	}
	return ebpf.NewMapFromID(innerID)
}

// Apply makes the data path serve exactly these VIPs. Each ring is built aside and swapped
// in with one map update, so a packet sees the old ring or the new one. VIPs and backends
// that are no longer listed are removed after the new state is in place.
func (lb *LB) Apply(vips []VIP) error {
	lb.mu.Lock()
	defer lb.mu.Unlock()

	if len(vips) > MaxVIPs {
		return fmt.Errorf("%d VIPs: the data path holds at most %d", len(vips), MaxVIPs)
	}
	keep := map[pairKey]bool{}
	keepVIP := map[VIPKey]bool{}
	for _, v := range vips {
		keepVIP[v.Key] = true
		for _, b := range v.Backends {
			keep[pairKey{v.Key, b.Addr}] = true
		}
	}
	if len(keep) >= MaxBackends {
		return fmt.Errorf("%d VIP-backend pairs: the data path holds at most %d", len(keep), MaxBackends-1)
	}
	// removals first free ids, but they must not disturb VIPs that stay: only gone ones
	for key, st := range lb.vips {
		if !keepVIP[key] {
			if err := lb.deleteVIP(key, st); err != nil {
				return err
			}
		}
	}
	for pk, slot := range lb.pairs {
		if !keep[pk] {
			if err := lb.objs.Backends.Put(slot.id, lbBackend{}); err != nil {
				return fmt.Errorf("clear backend %s of %s: %w", pk.addr, pk.vip, err)
			}
			delete(lb.pairs, pk)
		}
	}
	wildcards := uint32(0)
	filter := make([]uint64, vipFilterWords)
	for _, v := range vips {
		if v.Key.Port == 0 {
			wildcards++
		}
		bit := vipFilterBit(v.Key.Addr)
		filter[bit/64] |= 1 << (bit % 64)
	}
	// the address filter lets new VIPs in before they are written, and forgets removed ones
	// after they are gone: first the union of old and new, at the end the new alone
	union := make([]uint64, vipFilterWords)
	for w := range union {
		union[w] = filter[w] | lb.filter[w]
	}
	if err := lb.writeFilter(union); err != nil {
		return err
	}
	addrs := map[netip.Addr]bool{}
	for _, v := range vips {
		addrs[v.Key.Addr] = true
		if !lb.addrs[v.Key.Addr] {
			if err := lb.objs.VipAddrs.Put(vipKeyTo(VIPKey{Addr: v.Key.Addr}), uint32(1)); err != nil {
				return fmt.Errorf("write vip address %s: %w", v.Key.Addr, err)
			}
			lb.addrs[v.Key.Addr] = true
		}
	}
	// switch the wildcard lookup on before a wildcard VIP appears, off after the last goes
	if wildcards > 0 {
		if err := lb.objs.LbCtl.Put(uint32(0), lbLbCtl{WildcardVips: wildcards}); err != nil {
			return fmt.Errorf("write lb_ctl: %w", err)
		}
	}
	for _, v := range vips {
		if err := lb.applyVIP(v); err != nil {
			return fmt.Errorf("vip %s: %w", v.Key, err)
		}
	}
	if wildcards == 0 {
		if err := lb.objs.LbCtl.Put(uint32(0), lbLbCtl{}); err != nil {
			return fmt.Errorf("write lb_ctl: %w", err)
		}
	}
	for a := range lb.addrs {
		if !addrs[a] {
			if err := lb.objs.VipAddrs.Delete(vipKeyTo(VIPKey{Addr: a})); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("delete vip address %s: %w", a, err)
			}
			delete(lb.addrs, a)
		}
	}
	return lb.writeFilter(filter)
}

const (
	vipFilterWords = 65536 / 64
	vipFilterMul   = 0x9e3779b1
)

// vipFilterBit mirrors vip_filter_bit_* in bpf/hash.h.
func vipFilterBit(a netip.Addr) uint32 {
	var w uint32
	if a.Is4() {
		b := a.As4()
		w = le(b[:])
	} else {
		b := a.As16()
		w = le(b[0:]) ^ le(b[4:]) ^ le(b[8:]) ^ le(b[12:])
	}
	return (w * vipFilterMul) >> 16
}

// writeFilter writes the words of vip_filter that differ from what was last written.
func (lb *LB) writeFilter(words []uint64) error {
	for w, v := range words {
		if lb.filter[w] == v {
			continue
		}
		if err := lb.objs.VipFilter.Put(uint32(w), v); err != nil {
			return fmt.Errorf("write vip filter: %w", err)
		}
		lb.filter[w] = v
	}
	return nil
}

func (lb *LB) applyVIP(v VIP) error {
	if !v.Key.Addr.IsValid() {
		return errors.New("no address")
	}
	st, exists := lb.vips[v.Key]
	if !exists {
		id, err := lb.freeID(func(s vipState) uint32 { return s.id }, MaxVIPs)
		if err != nil {
			return err
		}
		st.id = id
		// a new VIP starts its counters from zero
		if err := lb.objs.VipStats.Put(id, make([]lbCounter, ebpf.MustPossibleCPU())); err != nil {
			return fmt.Errorf("reset counters: %w", err)
		}
	}
	var flags uint32
	if v.GUE {
		flags |= vipFlagGUE
	}
	ids := make([]uint32, len(v.Backends))
	for i, b := range v.Backends {
		id, err := lb.putBackend(st.id, flags, v.Key, b)
		if err != nil {
			return err
		}
		ids[i] = id
	}
	ring := make([]uint32, len(v.Ring))
	for i, idx := range v.Ring {
		if int(idx) >= len(ids) {
			return fmt.Errorf("ring slot %d names backend %d of %d", i, idx, len(ids))
		}
		ring[i] = ids[idx]
	}
	ringID := st.ringID
	if len(ring) > 0 {
		inner, err := lb.newRing(ring)
		if err != nil {
			return err
		}
		defer inner.Close()
		if !exists || st.ringSize != len(ring) {
			// a ring of another size gets a fresh slot, then the meta points at it in one update
			if ringID, err = lb.freeID(func(s vipState) uint32 { return s.ringID }, 2*MaxVIPs); err != nil {
				return err
			}
		}
		if err := lb.objs.Rings.Put(ringID, inner); err != nil {
			return fmt.Errorf("swap ring: %w", err)
		}
	}
	// an empty ring (no usable backend) leaves ring_size 0: the VIP's packets are dropped
	// and counted as no-backend rather than handed to a host that does not own the VIP
	meta := lbVipMeta{VipId: st.id, RingId: ringID, Flags: flags, RingSize: uint32(len(ring))}
	if err := lb.objs.Vips.Put(vipKeyTo(v.Key), meta); err != nil {
		return fmt.Errorf("write vip: %w", err)
	}
	if exists && st.ringSize > 0 && (ringID != st.ringID || len(ring) == 0) {
		if err := lb.objs.Rings.Delete(st.ringID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("drop old ring: %w", err)
		}
	}
	lb.vips[v.Key] = vipState{id: st.id, ringID: ringID, ringSize: len(ring)}
	return nil
}

func (lb *LB) newRing(ring []uint32) (*ebpf.Map, error) {
	spec := lb.innerSpec()
	spec.MaxEntries = uint32(len(ring))
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create ring of %d slots: %w", len(ring), err)
	}
	keys := make([]uint32, len(ring))
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := m.BatchUpdate(keys, ring, nil); err != nil {
		m.Close()
		return nil, fmt.Errorf("fill ring: %w", err)
	}
	return m, nil
}

var lbSpecOnce = sync.OnceValues(loadLb)

func (lb *LB) innerSpec() *ebpf.MapSpec {
	spec, err := lbSpecOnce()
	if err != nil {
		panic(err) // the embedded object parsed once already in OpenLB
	}
	return spec.Maps["rings"].InnerMap.Copy()
}

func (lb *LB) putBackend(vipID, vipFlags uint32, vk VIPKey, b Backend) (uint32, error) {
	pk := pairKey{vk, b.Addr}
	slot, ok := lb.pairs[pk]
	if !ok {
		id, err := lb.freeBackendID()
		if err != nil {
			return 0, err
		}
		lb.nextGen++
		slot = beSlot{id: id, gen: lb.nextGen}
		if err := lb.objs.BackendStats.Put(id, make([]lbCounter, ebpf.MustPossibleCPU())); err != nil {
			return 0, fmt.Errorf("reset backend counters: %w", err)
		}
	}
	e := lbBackend{Gen: slot.gen, Ifindex: uint32(b.Ifindex), VipId: vipID, VipFlags: vipFlags}
	a := b.Addr.As16()
	if b.Addr.Is4() {
		a4 := b.Addr.As4()
		a = [16]byte{}
		copy(a[:], a4[:])
	} else {
		e.Flags |= beFlagV6
	}
	for i := range 4 {
		e.Addr.V6[i] = le(a[4*i:])
	}
	if b.Down {
		e.Flags |= beFlagDown
	}
	copy(e.Dmac[:], b.DstMAC)
	copy(e.Smac[:], b.SrcMAC)
	if err := lb.objs.Backends.Put(slot.id, e); err != nil {
		return 0, fmt.Errorf("write backend %s: %w", b.Addr, err)
	}
	lb.pairs[pk] = slot
	return slot.id, nil
}

func (lb *LB) freeBackendID() (uint32, error) {
	used := make([]bool, MaxBackends)
	for _, s := range lb.pairs {
		used[s.id] = true
	}
	for id := uint32(1); id < MaxBackends; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no free backend id (max %d)", MaxBackends-1)
}

// freeID is the lowest id in [0, limit) that no VIP uses for the field get returns.
func (lb *LB) freeID(get func(vipState) uint32, limit uint32) (uint32, error) {
	used := map[uint32]bool{}
	for _, s := range lb.vips {
		used[get(s)] = true
	}
	for id := uint32(0); id < limit; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no free id (max %d)", limit)
}

func (lb *LB) deleteVIP(key VIPKey, st vipState) error {
	if err := lb.objs.Vips.Delete(vipKeyTo(key)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete vip %s: %w", key, err)
	}
	if err := lb.objs.Rings.Delete(st.ringID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete ring of %s: %w", key, err)
	}
	delete(lb.vips, key)
	return nil
}

// Ring reads back the backend addresses, slot by slot, of a VIP's live ring.
func (lb *LB) Ring(key VIPKey) ([]netip.Addr, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	st, ok := lb.vips[key]
	if !ok {
		return nil, fmt.Errorf("vip %s: not in the data path", key)
	}
	inner, err := lb.ringMap(st.ringID)
	if err != nil {
		return nil, err
	}
	defer inner.Close()
	addrByID := map[uint32]netip.Addr{}
	for pk, s := range lb.pairs {
		if pk.vip == key {
			addrByID[s.id] = pk.addr
		}
	}
	out := make([]netip.Addr, 0, st.ringSize)
	var slot, id uint32
	for slot = 0; slot < uint32(st.ringSize); slot++ {
		if err := inner.Lookup(slot, &id); err != nil {
			return nil, err
		}
		out = append(out, addrByID[id])
	}
	return out, nil
}

// Config returns the configuration the program was loaded with (defaults filled in).
func (lb *LB) Config() Config { return lb.cfg }

// Close releases this process's hold on the program; the pinned link keeps it running,
// so traffic goes on while lbd restarts.
func (lb *LB) Close() error {
	var errs []error
	for _, l := range []link.Link{lb.link, lb.probe} {
		if l != nil {
			errs = append(errs, l.Close())
		}
	}
	errs = append(errs, lb.objs.Close())
	return errors.Join(errs...)
}

// Detach removes the program from the interface and every pin lbd made for it.
func (lb *LB) Detach() error {
	var errs []error
	for _, l := range []link.Link{lb.link, lb.probe} {
		if l != nil {
			errs = append(errs, l.Unpin(), l.Close())
		}
	}
	lb.link, lb.probe = nil, nil
	names := []string{}
	spec, err := lbSpecOnce()
	if err == nil {
		names = pinnedNames(spec)
	}
	errs = append(errs, lb.objs.Close(), unpinAll(filepath.Join(lb.cfg.PinDir, lbDirPinName), names))
	return errors.Join(errs...)
}

// DetachPinned removes an LB left pinned in pinDir by an lbd that is no longer running.
func DetachPinned(pinDir string) error {
	var errs []error
	for _, name := range []string{xdpLinkName, probeLinkName} {
		if l, err := link.LoadPinnedLink(filepath.Join(pinDir, name), nil); err == nil {
			errs = append(errs, l.Unpin(), l.Close())
		}
	}
	spec, err := lbSpecOnce()
	if err != nil {
		return err
	}
	names := pinnedNames(spec)
	errs = append(errs, unpinAll(filepath.Join(pinDir, lbDirPinName), names))
	return errors.Join(errs...)
}

func vipKeyTo(k VIPKey) lbVipKey {
	var out lbVipKey
	out.Port = htons(k.Port)
	out.Proto = k.Proto
	if k.Addr.Is4() {
		a := k.Addr.As4()
		out.Addr.V6[0] = le(a[:])
		out.Family = afInet
	} else {
		a := k.Addr.As16()
		for i := range 4 {
			out.Addr.V6[i] = le(a[4*i:])
		}
		out.Family = afInet6
	}
	return out
}

func vipKeyFrom(k lbVipKey) VIPKey {
	return VIPKey{Addr: addrFrom(k.Addr.V6, k.Family == afInet6), Port: htons(k.Port), Proto: k.Proto}
}

func addrFrom(w [4]uint32, v6 bool) netip.Addr {
	var b [16]byte
	for i := range 4 {
		b[4*i] = byte(w[i])
		b[4*i+1] = byte(w[i] >> 8)
		b[4*i+2] = byte(w[i] >> 16)
		b[4*i+3] = byte(w[i] >> 24)
	}
	if !v6 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// htons swaps a port between host order and the network order the maps hold.
func htons(p uint16) uint16 { return p<<8 | p>>8 }

// Ifindex is the interface the program is attached to.
func (lb *LB) Ifindex() int { return lb.ifindex }

// The probe mark: ProbeMarkBase | backend id in the low 16 bits (bpf/lb_consts.h).
const (
	ProbeMarkBase = probeMark
	ProbeMarkMask = 0xffff0000
)
