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

const (
	xdpLinkName   = "xdp_lb_link"
	probeLinkName = "tc_probe_link"
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
	// QUICServerID is the server id the backend's QUIC connection ids carry (pkg/quiccid),
	// for a VIP with QUIC set; 0: none
	QUICServerID uint16
}

// VIP is a VIP's whole data-path state. Ring holds, per slot, an index into Backends;
// backends not in the ring (drained, down) still get entries so their flows are judged.
type VIP struct {
	Key      VIPKey
	Backends []Backend
	Ring     []uint32
	GUE      bool // encapsulate in UDP (GUE, direct IP) instead of IPIP
	// QUIC routes short-header QUIC packets by the server id in their connection id
	QUIC bool
}

// Config is what the LB program is loaded with.
type Config struct {
	Interface    string
	PinDir       string           // on a bpffs; maps and the XDP link are pinned below it
	HashSeed     uint32           // the same on every LB node
	EncapSource  netip.Addr       // zero: the interface's first IPv4 address
	EncapSource6 netip.Addr       // zero: the interface's first global IPv6 address
	MTU          int              // zero: the interface's MTU
	MAC          net.HardwareAddr // the interface's address, which ICMP answers leave from; nil: the interface's
	// SynFloodThreshold is the SYN flood guard's trigger: new flows per second on one CPU
	// above which SYNs go by the ring without entering the flow table; 0 turns it off
	SynFloodThreshold uint32
	// EncapPrefix and EncapPrefix6, when valid, give each flow an outer source inside them
	// (the flow hash picks the host part), so a backend's NIC spreads IPIP flows over its
	// receive queues; IPv4 /8 to /30, IPv6 /96 to /126
	EncapPrefix, EncapPrefix6 netip.Prefix
	// Chain, when set, puts xdp_lb into a slot of another XDP program's program array, to be
	// tail-called by it, instead of attaching it to the interface (XDPMode does not apply)
	Chain *Chain
	// XDPMode is how xdp_lb is attached; "" is XDPAuto
	XDPMode XDPMode
	// FlowTableSize is the entries of each flow table (IPv4, IPv6); 0: MAX_FLOWS. A
	// restart with another size copies the pinned tables' flows into new ones.
	FlowTableSize uint32
	Generic       bool // attach in generic (skb) mode instead of driver mode
	Logger        *slog.Logger
}

type vipState struct {
	id, ringID uint32
	ringSize   int
	// the ring as last applied, for flow sync's scan (flowsync.go), which may not open the
	// inner map by id: ring is the VIP's Ring (indices into ids, the caller's slice, never
	// modified), ids the backend id of each index; nil after a restart until an Apply
	ring, ids []uint32
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
	// Resized is how many flows were copied into flow tables of a new size at start
	Resized int
	// Mode is the XDP mode in effect, and ModeNote why it is not the one asked for
	Mode     XDPMode
	ModeNote string

	resizing *resizing // flow tables of another size, until the last copy after the swap

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
	if cfg.Chain != nil {
		if err := lb.chain(*cfg.Chain); err != nil {
			lb.objs.Close()
			return nil, err
		}
		return lb, lb.attachProbe()
	}
	var mode XDPMode
	var note string
	l, adopted, err := adoptOrAttach(filepath.Join(cfg.PinDir, xdpLinkName), lb.ifindex, lb.objs.XdpLb,
		func() (link.Link, error) {
			l, m, why, err := attachXDP(lb.objs.XdpLb, lb.ifindex, cfg.Interface, cfg.XDPMode)
			mode, note = m, why
			return l, err
		})
	if err != nil {
		lb.objs.Close()
		return nil, fmt.Errorf("attach xdp to %s: %w", cfg.Interface, err)
	}
	if adopted {
		mode = attachedMode(lb.ifindex)
		if cfg.XDPMode != "" && cfg.XDPMode != XDPAuto && cfg.XDPMode != mode {
			note = fmt.Sprintf("the pinned link lbd adopted is attached in %s mode, not %s: run `lbd detach` and restart to change it (traffic pauses while it re-attaches)", mode, cfg.XDPMode)
		}
	}
	lb.Mode, lb.ModeNote = mode, note
	lb.link, lb.Adopted = l, adopted
	return lb, lb.attachProbe()
}

// attachProbe attaches tc_probe to the interface's egress (or adopts its pinned link), and
// makes the copy that follows the program's swap when the flow tables were resized. On
// error the LB is closed.
func (lb *LB) attachProbe() error {
	pl, _, err := adoptOrAttach(filepath.Join(lb.cfg.PinDir, probeLinkName), lb.ifindex, lb.objs.TcProbe,
		func() (link.Link, error) {
			return link.AttachTCX(link.TCXOptions{Program: lb.objs.TcProbe, Interface: lb.ifindex, Attach: ebpf.AttachTCXEgress})
		})
	if err != nil {
		lb.Close()
		return fmt.Errorf("attach tc_probe to %s egress: %w", lb.cfg.Interface, err)
	}
	lb.probe = pl
	if n, err := lb.finishResize(); err != nil {
		lb.cfg.Logger.Warn("flow tables of a new size: the last copy failed; flows the old program recorded since the first copy may be lost", "err", err)
	} else if n > 0 {
		lb.Resized = n
	}
	return nil
}

// lbFlowTables are the LB's tables whose size is configurable.
var lbFlowTables = []table{tableOf[lbFlowKeyV4, lbFlowVal]("flows_v4"), tableOf[lbFlowKeyV6, lbFlowVal]("flows_v6")}

func (lb *LB) flowMaps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{"flows_v4": lb.objs.FlowsV4, "flows_v6": lb.objs.FlowsV6}
}

// finishResize makes the copy from resized tables that follows the program's swap.
func (lb *LB) finishResize() (int, error) {
	if lb.resizing == nil {
		return 0, nil
	}
	r := lb.resizing
	lb.resizing = nil
	first := lb.Resized
	n, err := r.finish(lb.flowMaps())
	return max(first, n), err
}

// FlowTables says how full the IPv4 and IPv6 flow tables are (it reads every key: a few
// milliseconds per 100,000 flows).
func (lb *LB) FlowTables() (v4, v6 TableFill, err error) {
	n4, err := countEntries[lbFlowKeyV4, lbFlowVal](lb.objs.FlowsV4)
	if err != nil {
		return v4, v6, fmt.Errorf("count ipv4 flows: %w", err)
	}
	n6, err := countEntries[lbFlowKeyV6, lbFlowVal](lb.objs.FlowsV6)
	if err != nil {
		return v4, v6, fmt.Errorf("count ipv6 flows: %w", err)
	}
	return TableFill{n4, int(lb.objs.FlowsV4.MaxEntries())}, TableFill{n6, int(lb.objs.FlowsV6.MaxEntries())}, nil
}

// ProbeMark is the socket mark that makes tc_probe encapsulate a probe's packets to the
// backend addr of VIP key, exactly as client traffic to that backend is; ok is false when
// the backend is not in the data path.
func (lb *LB) ProbeMark(key VIPKey, addr netip.Addr) (mark uint32, ok bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	slot, ok := lb.pairs[pairKey{key, addr}]
	return ProbeMarkBase | slot.id, ok
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
	if lb.resizing != nil {
		lb.resizing.close()
	}
	return errors.Join(errs...)
}

// Detach removes the program from the interface and every pin lbd made for it.
func (lb *LB) Detach() error {
	errs := []error{lb.unchain()}
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

// Ifindex is the interface the program is attached to.
func (lb *LB) Ifindex() int { return lb.ifindex }
