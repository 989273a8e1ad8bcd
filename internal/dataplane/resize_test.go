package dataplane

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// mustBPFFS mounts a bpffs of the test's own and returns it, unmounted at cleanup.
func mustBPFFS(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs at %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// loadPinnedLB loads xdp_lb pinned under dir with flow tables of size entries, makes the
// copy that follows a program swap (OpenLB makes it after attaching), and closes it at
// cleanup.
func loadPinnedLB(t *testing.T, dir string, size uint32) *LB {
	t.Helper()
	lb, err := loadLB(Config{PinDir: dir, HashSeed: testSeed, EncapSource: lbAddr, EncapSource6: lbAddr6, MTU: 1600, MAC: lbMAC, FlowTableSize: size})
	if err != nil {
		t.Fatalf("load xdp_lb pinned in %s: %+v", dir, err)
	}
	t.Cleanup(func() { lb.Close() })
	if _, err := lb.finishResize(); err != nil {
		t.Fatalf("finish resize: %v", err)
	}
	return lb
}

// TestFlowTableResizeAcrossRestart: a restart with another flow table size (bigger, then
// smaller than it was, with room for its flows) copies every flow into the new tables, and
// each flow keeps its backend although the ring changed meanwhile.
func TestFlowTableResizeAcrossRestart(t *testing.T) {
	dir := mustBPFFS(t)
	const n = 3000
	bes := testBackends(beAddrs)
	flow := func(i int) Flow {
		return Flow{Src: client, Dst: vip, SrcPort: uint16(10000 + i), DstPort: 80, Proto: 6}
	}

	// every flow from one CPU, which with BPF_F_NO_COMMON_LRU holds size/CPUs of them
	pinCPU(t, 0)
	first := loadPinnedLB(t, dir, 16384)
	mustApply(t, first, VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)})
	owners := make([]netip.Addr, n)
	for i := range owners {
		owners[i] = ackTo(t, first, flow(i), false)
	}
	v4, _, err := first.FlowTables()
	if err != nil {
		t.Fatal(err)
	}
	if v4.Entries != n || v4.Size != 16384 {
		t.Fatalf("first run's table: %+v, want %d of 16384", v4, n)
	}
	first.Close()

	for _, size := range []uint32{65536, 8192} {
		lb := loadPinnedLB(t, dir, size)
		v4, v6, err := lb.FlowTables()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("restart with %d entries per table: %d flows copied, ipv4 table %+v", size, lb.Resized, v4)
		if v4.Size != int(size) || v6.Size != int(size) || v4.Entries != n || lb.Resized != n {
			t.Fatalf("after a restart with size %d: ipv4 %+v, ipv6 %+v, %d copied; want all %d flows", size, v4, v6, lb.Resized, n)
		}
		if _, err := os.Stat(filepath.Join(dir, lbDirPinName, "flows_v4"+oldPinSuffix)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the old table's pin is still there: %v", err)
		}
		// every slot to backend 2: only the flow table keeps the flows where they were
		ring := make([]uint32, ringLen)
		for i := range ring {
			ring[i] = 2
		}
		mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: ring})
		for i, want := range owners {
			if got := ackTo(t, lb, flow(i), false); got != want {
				t.Fatalf("size %d: flow %d went to %s, it was on %s", size, i, got, want)
			}
		}
		mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)})
		lb.Close()
	}
}

// TestFlowTableLeftAsideIsRecovered: a run that died after moving a table aside (its pin
// renamed NAME_aside) left its flows there; the next run copies them in and removes the pin.
func TestFlowTableLeftAsideIsRecovered(t *testing.T) {
	dir := mustBPFFS(t)
	bes := testBackends(beAddrs)
	lb := loadPinnedLB(t, dir, 1024)
	mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)})
	f := Flow{Src: client, Dst: vip, SrcPort: 33333, DstPort: 80, Proto: 6}
	owner := ackTo(t, lb, f, false)
	lb.Close()
	pin := filepath.Join(dir, lbDirPinName, "flows_v4")
	if err := os.Rename(pin, pin+oldPinSuffix); err != nil {
		t.Fatal(err)
	}

	lb = loadPinnedLB(t, dir, 1024)
	if lb.Resized != 1 {
		t.Fatalf("%d flows recovered from the table left aside, want 1", lb.Resized)
	}
	if _, err := os.Stat(pin + oldPinSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the table left aside is still pinned: %v", err)
	}
	ring := make([]uint32, ringLen)
	for i := range ring {
		ring[i] = 2
	}
	mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: ring})
	if got := ackTo(t, lb, f, false); got != owner {
		t.Fatalf("the recovered flow went to %s, it was on %s", got, owner)
	}
}

// TestBackendHoldsMoreFlowsThanTheOldLimit: a backend host with a reply table larger than
// the compiled 262,144 entries restores the VIP on the replies of every one of 300,000
// decapsulated flows (the old size would have evicted some and sent their replies from the
// backend's own address).
func TestBackendHoldsMoreFlowsThanTheOldLimit(t *testing.T) {
	requireRoot(t)
	const flows, size = 300_000, 320_000
	b, err := loadBackendHost(BackendHostConfig{Local4: beAddrs[1], LBSources: testLBSources, VIPs: testServedVIPs, FlowTableSize: size}, "")
	if err != nil {
		t.Fatalf("load backend programs: %+v", err)
	}
	defer b.objs.Close()

	in := encapsulated(t, beAddrs[0], l3(packet(t, client, vip, tcp(1, 80, true, false))), true, false)
	const inner = 14 + 20 // the inner IPv4 header in the encapsulated frame
	out := make([]byte, len(in)+64)
	src := func(i int) uint32 { return 0xc6130000 | uint32(i>>16) }
	for i := range flows {
		binary.BigEndian.PutUint32(in[inner+12:], src(i))
		binary.BigEndian.PutUint16(in[inner+20:], uint16(i))
		if ret, err := b.objs.XdpDecap.Run(ebpfRun(in, out)); err != nil || ret != xdpPass {
			t.Fatalf("decap of flow %d: verdict %d, %v", i, ret, err)
		}
	}
	v4, _, err := b.FlowTables()
	if err != nil {
		t.Fatal(err)
	}
	if v4.Size != size || v4.Entries < flows {
		t.Fatalf("reply table %+v after %d flows", v4, flows)
	}
	r := tcp(80, 1, true, true)
	r.srcMAC, r.dstMAC = beMACs[0], clientMAC
	reply := packet(t, beAddrs[0], client, r)
	const l4 = 14 + 20
	missed := 0
	for i := range flows {
		binary.BigEndian.PutUint32(reply[14+16:], src(i))
		binary.BigEndian.PutUint16(reply[l4+2:], uint16(i))
		rout := make([]byte, len(reply)+64)
		if _, err := b.objs.TcEgress.Run(ebpfRun(reply, rout)); err != nil {
			t.Fatal(err)
		}
		if netip.AddrFrom4([4]byte(rout[14+12:14+16])) != vip {
			missed++
		}
	}
	if missed > 0 {
		t.Fatalf("%d of %d replies left without the VIP as their source", missed, flows)
	}
}

// pinCPU runs the rest of the test on one CPU (its goroutine's thread pinned there).
// At cleanup the thread gets its old affinity back before it returns to the runtime.
func pinCPU(t *testing.T, cpu int) {
	t.Helper()
	runtime.LockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("read CPU affinity: %v", err)
	}
	t.Cleanup(func() {
		_ = unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	})
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Fatalf("pin to CPU %d: %v", cpu, err)
	}
}
