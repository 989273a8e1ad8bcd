package testbed

import (
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

const xdpPass = 2 // XDP_PASS

// newPassProgram loads `return XDP_PASS`.
func newPassProgram() (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "testbed_pass",
		Type: ebpf.XDP,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, xdpPass),
			asm.Return(),
		},
		License: "GPL",
	})
	if err != nil {
		return nil, fmt.Errorf("load xdp_pass: %w", err)
	}
	return prog, nil
}

// attachPeerXDP attaches XDP_PASS to the switch-side peer of every LB veth:
// XDP_TX on a veth reaches the peer only if the peer has an XDP program
// (or GRO) — without it the LB's replies are dropped (Linux 6.18).
func (f *Fleet) attachPeerXDP() error {
	if len(f.LBs) == 0 || f.opts.PointToPoint {
		return nil // point to point: the user's XDP programs are on every end
	}
	prog, err := newPassProgram()
	if err != nil {
		return err
	}
	f.xdp = prog
	return f.Switch.Do(func() error {
		for _, lb := range f.LBs {
			ifc, err := net.InterfaceByName(lb.Peer)
			if err != nil {
				return err
			}
			l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
			if err != nil {
				return fmt.Errorf("attach xdp_pass to %s: %w", lb.Peer, err)
			}
			f.xdpLinks = append(f.xdpLinks, l)
		}
		return nil
	})
}

// PassProgramID is the ID of the XDP_PASS program attached to the LB peers
// (0 when there are none).
func (f *Fleet) PassProgramID() (ebpf.ProgramID, error) {
	if f.xdp == nil {
		return 0, nil
	}
	info, err := f.xdp.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return id, nil
}
