package dataplane

// Read-only lookups for `lbd explain`: where xdp_lb sends one flow, and why. Nothing here
// writes a map or runs xdp_lb (a test run of xdp_lb would record the flow and count it).
//
// The flow table is read with the map syscall. For an LRU map that lookup does not mark the
// entry as used (the kernel's syscall path, htab_lru_map_lookup_elem_sys, passes mark=false;
// explain_test.go shows it), so explaining a flow does not keep it in the table. The LRU
// keeps no age or last-use time per entry: an entry is only there or gone.
//
// A ring is an inner map of the rings array-of-maps. From user space, the outer map yields
// the inner map's id, and opening a map by id (BPF_MAP_GET_FD_BY_ID) needs CAP_SYS_ADMIN,
// which lbd does without (configs/systemd/lbd.service). So the slot is read by a small
// program, run once with BPF_PROG_TEST_RUN, that does what xdp_lb's ring_backend does: look
// the ring up by id, then the slot in it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// FlowEntry is a flow's entry in the flow table: the backend its first packet (or its
// last SYN) was sent to.
type FlowEntry struct {
	BackendID  uint32 `json:"backend_id"`
	Generation uint32 `json:"generation"`
	// Backend is the backend that holds BackendID now (zero when the id is free).
	Backend netip.Addr `json:"backend"`
	// Stale is set when xdp_lb ignores the entry: the id was freed or reused by another
	// backend (its generation differs), or the backend is down. The next packet is hashed
	// onto the ring and the entry replaced.
	Stale       bool   `json:"stale"`
	StaleReason string `json:"stale_reason,omitempty"`
}

// RingSlot is where the ring sends the flow: a new connection (SYN), a flow not in the
// table, or one whose entry is stale.
type RingSlot struct {
	Hash      uint32     `json:"hash"` // the flow hash, with the data path's seed
	Size      uint32     `json:"size"` // 0: the VIP has no usable backend (drop_no_backend)
	Slot      uint32     `json:"slot"` // Hash % Size
	BackendID uint32     `json:"backend_id"`
	Backend   netip.Addr `json:"backend"`
}

// Explanation is what the data path holds for one flow, read without changing it.
type Explanation struct {
	// VIP is the VIP the packet matches (Port 0: a port-wildcard VIP); IsVIP false means
	// xdp_lb passes the packet to the host.
	VIP   VIPKey
	IsVIP bool
	// Entry is the flow table's entry, nil when the flow is not in the table.
	Entry *FlowEntry
	// Adopted is the flow's entry among the flows other LB nodes shared (flow sync), which
	// a packet that is not a SYN finds when the flow table has no usable entry; nil: none.
	Adopted *FlowEntry
	Ring    RingSlot
	// Backend is where the flow's next packet goes: the entry's backend, else the adopted
	// flow's, else the ring's (zero: dropped, no backend). A SYN always goes to Ring.Backend.
	Backend netip.Addr
	// ByEntry says Backend comes from the flow table, ByAdopted from the adopted flows;
	// neither: from the ring.
	ByEntry, ByAdopted bool
}

// Explain reads where xdp_lb sends flow f (ports in host order, Proto 6 or 17).
func (lb *LB) Explain(f Flow) (Explanation, error) {
	var ex Explanation
	if !f.Src.IsValid() || !f.Dst.IsValid() || f.Src.Is4() != f.Dst.Is4() {
		return ex, fmt.Errorf("flow %s -> %s: want two addresses of one family", f.Src, f.Dst)
	}
	if f.Proto != 6 && f.Proto != 17 {
		return ex, fmt.Errorf("protocol %d: xdp_lb balances only TCP (6) and UDP (17)", f.Proto)
	}
	f.Src, f.Dst = f.Src.Unmap(), f.Dst.Unmap()
	lb.mu.Lock()
	defer lb.mu.Unlock()

	// the VIP as find_vip looks it up: {addr, port, proto}, then the port wildcard
	meta, found, err := lb.lookupVIP(VIPKey{Addr: f.Dst, Port: f.DstPort, Proto: f.Proto})
	if err != nil {
		return ex, err
	}
	ex.VIP = VIPKey{Addr: f.Dst, Port: f.DstPort, Proto: f.Proto}
	if !found {
		var ctl lbLbCtl
		if err := lb.objs.LbCtl.Lookup(uint32(0), &ctl); err != nil {
			return ex, fmt.Errorf("read lb_ctl: %w", err)
		}
		if ctl.WildcardVips > 0 {
			ex.VIP.Port = 0
			if meta, found, err = lb.lookupVIP(ex.VIP); err != nil {
				return ex, err
			}
		}
	}
	if !found {
		ex.VIP.Port = f.DstPort
		return ex, nil
	}
	ex.IsVIP = true

	if ex.Entry, err = lb.flowEntry(f); err != nil {
		return ex, err
	}
	if ex.Adopted, err = lb.adoptedEntry(f, meta.VipId); err != nil {
		return ex, err
	}
	ex.Ring = RingSlot{Hash: f.Hash(lb.cfg.HashSeed), Size: meta.RingSize}
	if meta.RingSize > 0 {
		ex.Ring.Slot = ex.Ring.Hash % meta.RingSize
		if ex.Ring.BackendID, err = lb.ringSlot(meta.RingId, ex.Ring.Slot); err != nil {
			return ex, err
		}
		if ex.Ring.BackendID != 0 {
			be, err := lb.backendEntry(ex.Ring.BackendID)
			if err != nil {
				return ex, err
			}
			ex.Ring.Backend = addrFrom(be.Addr.V6, be.Flags&beFlagV6 != 0)
		}
	}
	switch {
	case ex.Entry != nil && !ex.Entry.Stale:
		ex.Backend, ex.ByEntry = ex.Entry.Backend, true
	case ex.Adopted != nil && !ex.Adopted.Stale:
		ex.Backend, ex.ByAdopted = ex.Adopted.Backend, true
	default:
		ex.Backend = ex.Ring.Backend
	}
	return ex, nil
}

func (lb *LB) lookupVIP(k VIPKey) (lbVipMeta, bool, error) {
	var meta lbVipMeta
	err := lb.objs.Vips.Lookup(vipKeyTo(k), &meta)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return meta, false, nil
	}
	if err != nil {
		return meta, false, fmt.Errorf("look up vip %s: %w", k, err)
	}
	return meta, true, nil
}

func (lb *LB) backendEntry(id uint32) (lbBackend, error) {
	var be lbBackend
	if err := lb.objs.Backends.Lookup(id, &be); err != nil {
		return be, fmt.Errorf("look up backend %d: %w", id, err)
	}
	return be, nil
}

// flowEntry is f's entry in its family's flow table, judged as flow_backend judges it; nil
// when there is none.
func (lb *LB) flowEntry(f Flow) (*FlowEntry, error) {
	val, ok, err := lookupFlow(lb.objs.FlowsV4, lb.objs.FlowsV6, f)
	if err != nil || !ok {
		return nil, err
	}
	return lb.judgeEntry(val, nil), nil
}

// lookupFlow reads f's value from v4 or v6 (a flow table or an adopted-flow map) by its
// family; false when it has none.
func lookupFlow(v4, v6 *ebpf.Map, f Flow) (lbFlowVal, bool, error) {
	var val lbFlowVal
	var err error
	if f.Src.Is4() {
		err = v4.Lookup(keyV4(f), &val)
	} else {
		err = v6.Lookup(keyV6(f), &val)
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return val, false, nil
	}
	if err != nil {
		return val, false, fmt.Errorf("look up flow: %w", err)
	}
	return val, true, nil
}

// judgeEntry says whether a recorded backend id and generation still name a backend
// xdp_lb would use, as flow_backend judges them; with vipID, also that the backend serves
// that VIP, as adopted_backend does.
func (lb *LB) judgeEntry(val lbFlowVal, vipID *uint32) *FlowEntry {
	e := &FlowEntry{BackendID: val.BackendId, Generation: val.Gen}
	be, err := lb.backendEntry(val.BackendId)
	if err != nil {
		// an id past the table: xdp_lb's lookup fails the same way and re-hashes
		e.Stale, e.StaleReason = true, "backend id out of range"
		return e
	}
	if be.Gen != 0 {
		e.Backend = addrFrom(be.Addr.V6, be.Flags&beFlagV6 != 0)
	}
	switch {
	case be.Gen == 0:
		e.Stale, e.StaleReason = true, "the backend was removed (its id is free)"
	case be.Gen != val.Gen:
		e.Stale, e.StaleReason = true, fmt.Sprintf("the id now belongs to another backend (generation %d, the entry has %d)", be.Gen, val.Gen)
	case be.Flags&beFlagDown != 0:
		e.Stale, e.StaleReason = true, "the backend is down"
	case vipID != nil && be.VipId != *vipID:
		e.Stale, e.StaleReason = true, "the backend serves another VIP here"
	}
	return e
}

// ringSlot is the backend id in slot of ring ringID as xdp_lb sees it (0: none).
func (lb *LB) ringSlot(ringID, slot uint32) (uint32, error) {
	prog, err := ringReader(lb.objs.Rings)
	if err != nil {
		return 0, err
	}
	defer prog.Close()
	in := make([]byte, 64) // a test run wants at least an Ethernet header's worth
	binary.LittleEndian.PutUint32(in[0:], ringID)
	binary.LittleEndian.PutUint32(in[4:], slot)
	id, err := prog.Run(&ebpf.RunOptions{Data: in})
	if err != nil {
		return 0, fmt.Errorf("read ring %d slot %d: %w", ringID, slot, err)
	}
	return id, nil
}

// ringReader is an XDP program that reads {ring id, slot} (two host-order u32) from the
// start of its packet and returns the backend id in that slot of rings, 0 if there is none.
// It writes nothing.
func ringReader(rings *ebpf.Map) (*ebpf.Program, error) {
	loadRings := asm.LoadMapPtr(asm.R1, 0)
	if err := loadRings.AssociateMap(rings); err != nil {
		return nil, err
	}
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // ctx->data
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // ctx->data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 8),
		asm.JGT.Reg(asm.R4, asm.R3, "none"),
		asm.LoadMem(asm.R6, asm.R2, 0, asm.Word), // ring id
		asm.LoadMem(asm.R7, asm.R2, 4, asm.Word), // slot
		asm.StoreMem(asm.RFP, -4, asm.R6, asm.Word),
		loadRings,
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(), // the ring
		asm.JEq.Imm(asm.R0, 0, "none"),
		asm.StoreMem(asm.RFP, -8, asm.R7, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(), // the slot
		asm.JEq.Imm(asm.R0, 0, "none"),
		asm.LoadMem(asm.R0, asm.R0, 0, asm.Word),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("none"),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "lbd_ring_read", Type: ebpf.XDP, License: "GPL", Instructions: insns})
	if err != nil {
		return nil, fmt.Errorf("load ring reader: %w", err)
	}
	return prog, nil
}
