package testbed_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/lbdproj/lbd/internal/testbed"
	"github.com/lbdproj/lbd/internal/wait"
)

// reflector answers IPv4 UDP to port with XDP_TX, swapping MACs, addresses
// and ports (checksum-neutral: both sums are over the same swapped words).
func reflector(t *testing.T, port uint16) *ebpf.Program {
	t.Helper()
	be := func(v uint16) int32 { // a network-order u16 as a little-endian load sees it
		var b [2]byte
		binary.BigEndian.PutUint16(b[:], v)
		return int32(binary.LittleEndian.Uint16(b[:]))
	}
	swap := func(a, b int16, size asm.Size) asm.Instructions {
		return asm.Instructions{
			asm.LoadMem(asm.R4, asm.R2, a, size),
			asm.LoadMem(asm.R5, asm.R2, b, size),
			asm.StoreMem(asm.R2, a, asm.R5, size),
			asm.StoreMem(asm.R2, b, asm.R4, size),
		}
	}
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 42), // eth + ipv4 without options + udp
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R5, be(0x0800), "pass"),
		asm.LoadMem(asm.R5, asm.R2, 14, asm.Byte),
		asm.JNE.Imm(asm.R5, 0x45, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 23, asm.Byte),
		asm.JNE.Imm(asm.R5, 17, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 36, asm.Half),
		asm.JNE.Imm(asm.R5, be(port), "pass"),
	}
	insns = append(insns, swap(0, 6, asm.Word)...)
	insns = append(insns, swap(4, 10, asm.Half)...)
	insns = append(insns, swap(26, 30, asm.Word)...)
	insns = append(insns, swap(34, 36, asm.Half)...)
	insns = append(insns,
		asm.Mov.Imm(asm.R0, 3), // XDP_TX
		asm.Return(),
		asm.Mov.Imm(asm.R0, testbed.XDPPass).WithSymbol("pass"),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, Instructions: insns, License: "GPL"})
	if err != nil {
		t.Fatalf("load reflector: %+v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// TestXDPTxReachesClient is the test bed's reason to exist: an answer an LB
// sends with XDP_TX on its veth arrives at the client (it needs the XDP_PASS
// program on the switch-side peer, and the client's checksums in software).
func TestXDPTxReachesClient(t *testing.T) {
	f := newFleet(t, testbed.Options{LBs: 2, Backends: 1})
	const port = 4242
	prog := reflector(t, port)
	for _, lb := range f.LBs {
		err := lb.Do(func() error {
			l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: lb.Ifindex, Flags: link.XDPDriverMode})
			if err == nil {
				t.Cleanup(func() { l.Close() })
			}
			return err
		})
		if err != nil {
			t.Fatalf("attach reflector on %s: %v", lb.Name, err)
		}

		c, err := f.Client.Dialer().Dial("udp4", netip.AddrPortFrom(lb.Addr, port).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := []byte("reflect me via " + lb.Name)
		buf := make([]byte, 64)
		var n int
		err = wait.Until(3*time.Second, 10*time.Millisecond, func() (bool, error) {
			if _, err := c.Write(msg); err != nil {
				return false, err
			}
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err = c.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return false, err
			}
			return err == nil, err
		})
		if err != nil {
			t.Fatalf("no XDP_TX answer from %s: %v", lb.Name, err)
		}
		if string(buf[:n]) != string(msg) {
			t.Fatalf("answer %q, want %q", buf[:n], msg)
		}
	}
}
