package testbed

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// XDPFilter is an operator's program in front of lbd, as the test bed plays it: an XDP
// root on an interface that drops IPv4 packets from one source address and tail-calls the
// program in slot 0 of its program array with everything else (XDP_PASS while the slot is
// empty). lbd's node.xdp_chain puts xdp_lb into that slot.
type XDPFilter struct {
	ProgArray string // where the program array is pinned
	Slot      uint32
	progs     *ebpf.Map
	prog      *ebpf.Program
	link      link.Link
}

// AttachXDPFilter attaches a filter dropping drop's packets to h's interface and pins its
// program array at pin (on a bpffs).
func (h *Host) AttachXDPFilter(drop netip.Addr, pin string) (*XDPFilter, error) {
	if !drop.Is4() {
		return nil, fmt.Errorf("xdp filter: %s is not IPv4", drop)
	}
	progs, err := ebpf.NewMap(&ebpf.MapSpec{Name: "filter_chain", Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	if err != nil {
		return nil, fmt.Errorf("xdp filter: program array: %w", err)
	}
	if err := progs.Pin(pin); err != nil {
		progs.Close()
		return nil, fmt.Errorf("xdp filter: pin %s: %w", pin, err)
	}
	a := drop.As4()
	src := binary.LittleEndian.Uint32(a[:]) // as a little-endian load of the network-order field
	const (
		ethIPv4    = 0x0008 // htons(ETH_P_IP), loaded little-endian
		xdpDrop    = 1
		offProto   = 12
		offSaddr   = 14 + 12
		headerRoom = 14 + 20
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "testbed_filter",
		Type: ebpf.XDP,
		// a program array takes only programs like its owner's, expected attach type
		// included (linux 6.18): xdp_lb, from an ELF "xdp" section, has AttachXDP
		AttachType: ebpf.AttachXDP,
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),              // ctx
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
			asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, headerRoom),
			asm.JGT.Reg(asm.R4, asm.R3, "chain"),
			asm.LoadMem(asm.R5, asm.R2, offProto, asm.Half),
			asm.JNE.Imm(asm.R5, ethIPv4, "chain"),
			asm.LoadMem(asm.R5, asm.R2, offSaddr, asm.Word),
			asm.JNE.Imm32(asm.R5, int32(src), "chain"),
			asm.Mov.Imm(asm.R0, xdpDrop),
			asm.Return(),
			asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("chain"),
			asm.LoadMapPtr(asm.R2, progs.FD()),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnTailCall.Call(),
			asm.Mov.Imm(asm.R0, xdpPass), // the slot is empty
			asm.Return(),
		},
		License: "GPL",
	})
	if err != nil {
		progs.Close()
		return nil, fmt.Errorf("xdp filter: load: %w", err)
	}
	f := &XDPFilter{ProgArray: pin, progs: progs, prog: prog}
	err = h.Do(func() error {
		ifc, err := net.InterfaceByName(h.Link)
		if err != nil {
			return err
		}
		f.link, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("xdp filter: attach to %s: %w", h.Link, err)
	}
	return f, nil
}

// ProgramID is the filter program's id: the one still attached after lbd restarts.
func (f *XDPFilter) ProgramID() (ebpf.ProgramID, error) {
	info, err := f.prog.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return id, nil
}

// Close detaches the filter and removes its pin.
func (f *XDPFilter) Close() error {
	if f.link != nil {
		_ = f.link.Close()
	}
	_ = f.progs.Unpin()
	_ = f.progs.Close()
	return f.prog.Close()
}
