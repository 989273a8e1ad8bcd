package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/internal/testbed"
	"github.com/lbdproj/lbd/pkg/consistenthash"
)

// newGen loads the generator: frames from src to dst (MACs), flows as in gen.c.
func newGen(dst, src net.HardwareAddr, flows uint32, syn bool) (*genObjects, error) {
	spec, err := loadGen()
	if err != nil {
		return nil, err
	}
	if err := setVars(spec, map[string]any{
		"dst_mac":  [6]byte(dst),
		"src_mac":  [6]byte(src),
		"src_ip":   be32(client),
		"flow_net": be32(flowNet),
		"dst_ip":   be32(vip),
		"dst_port": uint16(80),
		"flows":    flows,
		"syn":      b2u8(syn),
	}); err != nil {
		return nil, fmt.Errorf("gen: %w", err)
	}
	var g genObjects
	if err := spec.LoadAndAssign(&g, nil); err != nil {
		return nil, fmt.Errorf("load gen: %w", err)
	}
	return &g, nil
}

func newFwd(t *topo) (*fwdObjects, error) {
	spec, err := loadFwd()
	if err != nil {
		return nil, err
	}
	if err := setVars(spec, map[string]any{
		"dst_mac":     [6]byte(t.sinkMAC),
		"src_mac":     [6]byte(t.lbOutMAC),
		"out_ifindex": uint32(t.lbOutIfindex),
		"encap_src":   be32(lbOut),
		"encap_dst":   be32(backend0),
	}); err != nil {
		return nil, fmt.Errorf("fwd: %w", err)
	}
	var f fwdObjects
	if err := spec.LoadAndAssign(&f, nil); err != nil {
		return nil, fmt.Errorf("load fwd: %w", err)
	}
	return &f, nil
}

func setVars(spec *ebpf.CollectionSpec, vars map[string]any) error {
	for name, v := range vars {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("no variable %q", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// be32 is an IPv4 address as a host-order number (the programs convert it).
func be32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// attachXDP attaches prog in driver mode to ifindex in h's namespace.
func attachXDP(h *testbed.Host, prog *ebpf.Program, ifindex int) (link.Link, error) {
	var l link.Link
	err := h.Do(func() (err error) {
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		return err
	})
	return l, err
}

// applyVIP serves 198.18.0.10:80/tcp from backends whose next hop is the sink, and returns
// the ring's algorithm.
func applyVIP(lb *dataplane.LB, dst, src net.HardwareAddr, ifindex int) (consistenthash.Algorithm, error) {
	var members []consistenthash.Member
	var bes []dataplane.Backend
	b := backend0.As4()
	for i := range *nBE {
		a := netip.AddrFrom4([4]byte{b[0], b[1], b[2], b[3] + byte(i)})
		members = append(members, consistenthash.Member{Key: a.String(), Weight: 1})
		bes = append(bes, dataplane.Backend{Addr: a, DstMAC: dst, SrcMAC: src, Ifindex: ifindex})
	}
	alg := consistenthash.DefaultAlgorithm
	ring, err := consistenthash.Build(alg, members, consistenthash.DefaultSize)
	if err != nil {
		return alg, err
	}
	return alg, lb.Apply([]dataplane.VIP{{Key: dataplane.VIPKey{Addr: vip, Port: 80, Proto: 6}, Backends: bes, Ring: ring}})
}

// xdpLinkOf finds the XDP link on the named interface of h and the program attached to it.
func xdpLinkOf(h *testbed.Host, ifname string) (link.Link, *ebpf.Program, error) {
	nh, err := h.Netlink()
	if err != nil {
		return nil, nil, err
	}
	defer nh.Close()
	l, err := nh.LinkByName(ifname)
	if err != nil {
		return nil, nil, err
	}
	if l.Attrs().Xdp == nil || l.Attrs().Xdp.ProgId == 0 {
		return nil, nil, fmt.Errorf("no XDP program on %s", ifname)
	}
	id := ebpf.ProgramID(l.Attrs().Xdp.ProgId)
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return nil, nil, err
	}
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err == nil && info.Type == link.XDPType && info.Program == id {
			return it.Take(), prog, nil
		}
	}
	prog.Close()
	return nil, nil, errors.Join(fmt.Errorf("no XDP link runs program %d", id), it.Err())
}

func sinkTotal(s *sinkObjects) (sinkSinkCount, error) {
	var per []sinkSinkCount
	var out sinkSinkCount
	if err := s.SinkCounts.Lookup(uint32(0), &per); err != nil {
		return out, err
	}
	for _, c := range per {
		out.Packets += c.Packets
		out.Ipip += c.Ipip
		out.Bytes += c.Bytes
	}
	return out, nil
}

func percpuSum(m *ebpf.Map) (uint64, error) {
	var per []uint64
	if err := m.Lookup(uint32(0), &per); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

func b2u8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
