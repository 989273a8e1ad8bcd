package dataplane

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// sentTo passes one packet of f (a SYN, or an ACK) through xdp_lb and returns the backend
// it was encapsulated to, IPv4 or IPv6 outer header.
func sentTo(t *testing.T, lb *LB, f Flow, syn bool) netip.Addr {
	t.Helper()
	ret, out := run(t, lb.objs.XdpLb, packet(t, f.Src, f.Dst, tcp(f.SrcPort, f.DstPort, syn, !syn)))
	if ret != xdpTX {
		t.Fatalf("%v: verdict %d, want XDP_TX", f, ret)
	}
	if binary.BigEndian.Uint16(out[12:]) == 0x86dd {
		return netip.AddrFrom16([16]byte(out[14+24 : 14+40]))
	}
	return netip.AddrFrom4([4]byte(out[14+16 : 14+20]))
}

func mustExplain(t *testing.T, lb *LB, f Flow) Explanation {
	t.Helper()
	ex, err := lb.Explain(f)
	if err != nil {
		t.Fatalf("explain %v: %v", f, err)
	}
	return ex
}

// Explain answers what xdp_lb then does with a packet of the flow: before the flow is
// known (the ring), once it is (the flow table), when the ring changes under it, when its
// backend goes down and when it is removed; and explaining changes nothing.
func TestExplainMatchesDataPath(t *testing.T) {
	lb := mustLoadLB(t)
	bes := testBackends(beAddrs)
	v := VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)}
	mustApply(t, lb, v)
	f := Flow{Src: client, Dst: vip, SrcPort: 43100, DstPort: 80, Proto: 6}

	before, err := lb.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ex := mustExplain(t, lb, f)
		if !ex.IsVIP || ex.VIP != webKey || ex.Entry != nil || ex.ByEntry {
			t.Fatalf("unknown flow: %+v, want the VIP %s and no flow table entry", ex, webKey)
		}
		want := owner(v, f)
		if ex.Ring.Size != ringLen || ex.Ring.Slot != f.Slot(testSeed, ringLen) || ex.Ring.Backend != want.Addr || ex.Backend != want.Addr {
			t.Fatalf("unknown flow: ring %+v, backend %s; want slot %d of %d, %s", ex.Ring, ex.Backend, f.Slot(testSeed, ringLen), ringLen, want.Addr)
		}
	}
	after, err := lb.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for reason, c := range after.Verdicts {
		if c != before.Verdicts[reason] {
			t.Errorf("explaining counted a packet as %s", reason)
		}
	}

	// the first packet records the flow; explain shows the entry and where it goes
	first := sentTo(t, lb, f, false)
	ex := mustExplain(t, lb, f)
	if ex.Entry == nil || ex.Entry.Backend != first || ex.Entry.Stale || !ex.ByEntry || ex.Backend != first {
		t.Fatalf("after a packet to %s: %+v (entry %+v)", first, ex, ex.Entry)
	}
	if slot := lb.pairs[pairKey{webKey, first}]; ex.Entry.BackendID != slot.id || ex.Entry.Generation != slot.gen {
		t.Errorf("entry id %d generation %d, the backend is id %d generation %d", ex.Entry.BackendID, ex.Entry.Generation, slot.id, slot.gen)
	}

	// a ring that sends every slot elsewhere: the entry keeps the flow, a SYN follows the ring
	other := 0
	for i, b := range bes {
		if b.Addr != first {
			other = i
		}
	}
	ring := make([]uint32, ringLen)
	for i := range ring {
		ring[i] = uint32(other)
	}
	mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: ring})
	ex = mustExplain(t, lb, f)
	if ex.Backend != first || !ex.ByEntry || ex.Ring.Backend != bes[other].Addr {
		t.Fatalf("ring changed: explain says %s (by entry %v), ring %s; want %s by the entry, ring %s", ex.Backend, ex.ByEntry, ex.Ring.Backend, first, bes[other].Addr)
	}
	if got := sentTo(t, lb, f, false); got != ex.Backend {
		t.Fatalf("explain says %s, the next packet went to %s", ex.Backend, got)
	}

	// the flow's backend goes down: the entry is stale, the ring decides
	down := make([]Backend, len(bes))
	copy(down, bes)
	for i := range down {
		down[i].Down = down[i].Addr == first
	}
	mustApply(t, lb, VIP{Key: webKey, Backends: down, Ring: ring})
	ex = mustExplain(t, lb, f)
	if ex.Entry == nil || !ex.Entry.Stale || ex.Entry.StaleReason != "the backend is down" || ex.ByEntry || ex.Backend != bes[other].Addr {
		t.Fatalf("backend down: %+v (entry %+v)", ex, ex.Entry)
	}
	if got := sentTo(t, lb, f, false); got != ex.Backend {
		t.Fatalf("explain says %s, the next packet went to %s", ex.Backend, got)
	}

	// a flow on a backend that is then removed: its id is free, the entry stale
	g := Flow{Src: client, Dst: vip, SrcPort: 43101, DstPort: 80, Proto: 6}
	on := sentTo(t, lb, g, false) // bes[other], by the ring
	var keep []Backend
	for _, b := range bes {
		if b.Addr != on {
			keep = append(keep, b)
		}
	}
	mustApply(t, lb, VIP{Key: webKey, Backends: keep, Ring: roundRobinRing(ringLen, len(keep))})
	ex = mustExplain(t, lb, g)
	if ex.Entry == nil || !ex.Entry.Stale || ex.Entry.StaleReason != "the backend was removed (its id is free)" {
		t.Fatalf("backend removed: entry %+v", ex.Entry)
	}
	if got := sentTo(t, lb, g, false); got != ex.Backend || got == on {
		t.Fatalf("explain says %s, the next packet went to %s (the removed backend is %s)", ex.Backend, got, on)
	}
}

// Other VIP kinds: IPv6, a port-wildcard VIP, a VIP without backends, and an address that is
// no VIP at all.
func TestExplainVIPKinds(t *testing.T) {
	lb, vips := fixtureLB(t)
	f6 := Flow{Src: client6, Dst: vip6, SrcPort: 43200, DstPort: 80, Proto: 6}
	ex := mustExplain(t, lb, f6)
	if !ex.IsVIP || ex.VIP != web6Key || ex.Backend != owner(vips[web6Key], f6).Addr {
		t.Fatalf("ipv6: %+v", ex)
	}
	if got := sentTo(t, lb, f6, false); got != ex.Backend {
		t.Fatalf("ipv6: explain says %s, the packet went to %s", ex.Backend, got)
	}
	if ex = mustExplain(t, lb, f6); ex.Entry == nil || ex.Entry.Backend != ex.Backend {
		t.Fatalf("ipv6: after a packet, entry %+v", ex.Entry)
	}

	fw := Flow{Src: client, Dst: anyKey.Addr, SrcPort: 43201, DstPort: 8443, Proto: 6}
	ex = mustExplain(t, lb, fw)
	if !ex.IsVIP || ex.VIP != anyKey || ex.Backend != owner(vips[anyKey], fw).Addr {
		t.Fatalf("port wildcard: %+v", ex)
	}
	if got := sentTo(t, lb, fw, true); got != ex.Ring.Backend {
		t.Fatalf("port wildcard: explain's ring says %s, a SYN went to %s", ex.Ring.Backend, got)
	}

	if ex = mustExplain(t, lb, Flow{Src: client, Dst: lbAddr, SrcPort: 43202, DstPort: 22, Proto: 6}); ex.IsVIP {
		t.Fatalf("the LB's own address explained as a VIP: %+v", ex)
	}
	if _, err := lb.Explain(Flow{Src: client, Dst: vip, Proto: 1}); err == nil {
		t.Fatal("ICMP explained: want an error, xdp_lb balances only TCP and UDP")
	}

	// a VIP whose every backend is down has an empty ring: dropped as no backend
	down := testBackends(beAddrs)
	for i := range down {
		down[i].Down = true
	}
	mustApply(t, lb, VIP{Key: webKey, Backends: down})
	ex = mustExplain(t, lb, Flow{Src: client, Dst: vip, SrcPort: 43203, DstPort: 80, Proto: 6})
	if !ex.IsVIP || ex.Ring.Size != 0 || ex.Backend.IsValid() {
		t.Fatalf("no usable backend: %+v", ex)
	}
}

// The largest ring the data path indexes (MAX_RING_SIZE, the last automatic ring size):
// explain reads its slots through the reader program, and xdp_lb follows them.
func TestExplainLargestRing(t *testing.T) {
	lb := mustLoadLB(t)
	const size = 1048573
	bes := testBackends(beAddrs)
	v := VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(size, 3)}
	mustApply(t, lb, v)
	for sport := uint16(43300); sport < 43310; sport++ {
		f := Flow{Src: client, Dst: vip, SrcPort: sport, DstPort: 80, Proto: 6}
		ex := mustExplain(t, lb, f)
		if ex.Ring.Size != size || ex.Ring.Slot != f.Slot(testSeed, size) || ex.Ring.Backend != owner(v, f).Addr {
			t.Fatalf("ring %+v, want slot %d of %d, %s", ex.Ring, f.Slot(testSeed, size), size, owner(v, f).Addr)
		}
		if got := sentTo(t, lb, f, true); got != ex.Ring.Backend {
			t.Fatalf("explain's ring says %s, a SYN went to %s", ex.Ring.Backend, got)
		}
	}
}

// lruLookupProg looks up the u32 key at the start of its packet in m, as a BPF program does
// (marking the LRU entry as used), and returns 1 when it is there.
func lruLookupProg(t *testing.T, m *ebpf.Map) *ebpf.Program {
	t.Helper()
	load := asm.LoadMapPtr(asm.R1, 0)
	if err := load.AssociateMap(m); err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 4),
		asm.JGT.Reg(asm.R4, asm.R3, "miss"),
		asm.LoadMem(asm.R6, asm.R2, 0, asm.Word),
		asm.StoreMem(asm.RFP, -4, asm.R6, asm.Word),
		load,
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "miss"),
		asm.Mov.Imm(asm.R0, 1),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("miss"),
		asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// Explain reads the flow table with the map syscall. For an LRU map that lookup does not
// mark the entry as used, unlike a BPF program's: the kernel's syscall path
// (htab_lru_map_lookup_elem_sys) passes mark=false. Shown here on an LRU map of 1024
// entries: 256 old keys are looked up, 512 new ones inserted, and the looked-up keys survive
// the eviction when a program looked them up, and go like untouched ones when the syscall
// did. So explaining a flow does not keep it in the table.
func TestSyscallLookupDoesNotRefreshLRU(t *testing.T) {
	requireRoot(t)
	// one CPU throughout: the LRU's free lists are per CPU
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var one unix.CPUSet
	one.Set(0)
	var saved unix.CPUSet
	if err := unix.SchedGetaffinity(0, &saved); err != nil {
		t.Fatal(err)
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.SchedSetaffinity(0, &saved) }()

	const size, looked, fresh = 1024, 256, 512
	survivors := func(byProgram bool) (lookedUp, untouched int) {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 4, ValueSize: 4, MaxEntries: size})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		prog := lruLookupProg(t, m)
		for k := uint32(0); k < size; k++ {
			if err := m.Put(k, k); err != nil {
				t.Fatal(err)
			}
		}
		pkt := make([]byte, 64)
		for k := uint32(0); k < looked; k++ {
			if byProgram {
				binary.LittleEndian.PutUint32(pkt, k)
				if ret, err := prog.Run(&ebpf.RunOptions{Data: pkt}); err != nil || ret != 1 {
					t.Fatalf("program lookup of %d: %d, %v", k, ret, err)
				}
			} else {
				var v uint32
				if err := m.Lookup(k, &v); err != nil {
					t.Fatalf("syscall lookup of %d: %v", k, err)
				}
			}
		}
		for k := uint32(size); k < size+fresh; k++ {
			if err := m.Put(k, k); err != nil {
				t.Fatal(err)
			}
		}
		var v uint32
		for k := uint32(0); k < 2*looked; k++ {
			if m.Lookup(k, &v) == nil {
				if k < looked {
					lookedUp++
				} else {
					untouched++
				}
			}
		}
		return lookedUp, untouched
	}
	progKept, progOthers := survivors(true)
	sysKept, sysOthers := survivors(false)
	t.Logf("of %d looked-up keys and %d untouched ones of the same age, after %d inserts: by a program %d and %d survive, by the syscall %d and %d",
		looked, looked, fresh, progKept, progOthers, sysKept, sysOthers)
	// the experiment can tell: a program's lookup keeps most of them
	if progKept < looked*9/10 {
		t.Fatalf("looked up by a program, only %d of %d keys survived: the experiment cannot tell", progKept, looked)
	}
	if sysKept > looked/10 || sysKept > sysOthers+looked/10 {
		t.Errorf("looked up by the syscall, %d of %d keys survived (untouched: %d): the syscall lookup refreshed them", sysKept, looked, sysOthers)
	}
}
