// chain.go: xdp_lb behind another XDP program, in a slot of its program array.

package dataplane

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Chain is a slot of a pinned program array that an XDP program in front of lbd (a DDoS
// filter, a dispatcher) tail-calls: xdp_lb goes there instead of onto the interface.
type Chain struct {
	ProgArray string // pinned BPF_MAP_TYPE_PROG_ARRAY, on a bpffs
	Slot      uint32
}

// XDPChained is the mode reported when xdp_lb runs from a program array.
const XDPChained XDPMode = "chained"

// chain puts xdp_lb into c's slot; a restart replaces the program there in one update, so
// the root program (and traffic) never goes without it.
func (lb *LB) chain(c Chain) error {
	progs, err := ebpf.LoadPinnedMap(c.ProgArray, nil)
	if err != nil {
		return fmt.Errorf("xdp chain: open the program array %s: %w", c.ProgArray, err)
	}
	defer progs.Close()
	if progs.Type() != ebpf.ProgramArray {
		return fmt.Errorf("xdp chain: %s is a %s, not a program array", c.ProgArray, progs.Type())
	}
	if c.Slot >= progs.MaxEntries() {
		return fmt.Errorf("xdp chain: slot %d of %s, which has %d", c.Slot, c.ProgArray, progs.MaxEntries())
	}
	var old ebpf.ProgramID
	lb.Adopted = progs.Lookup(c.Slot, &old) == nil
	if err := progs.Put(c.Slot, lb.objs.XdpLb); err != nil {
		return fmt.Errorf("xdp chain: put xdp_lb into slot %d of %s: %w", c.Slot, c.ProgArray, err)
	}
	lb.Mode = XDPChained
	lb.ModeNote = fmt.Sprintf("tail-called from slot %d of %s", c.Slot, c.ProgArray)
	return nil
}

// unchain empties xdp_lb's slot when it still holds this program.
func (lb *LB) unchain() error {
	c := lb.cfg.Chain
	if c == nil {
		return nil
	}
	progs, err := ebpf.LoadPinnedMap(c.ProgArray, nil)
	if err != nil {
		return nil // the root program and its array are gone already
	}
	defer progs.Close()
	if err := progs.Delete(c.Slot); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("xdp chain: empty slot %d of %s: %w", c.Slot, c.ProgArray, err)
	}
	return nil
}
