package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestSynFloodKeepsEstablishedFlows: 100 established flows keep their backends across a
// ring change while 1,000,000 spoofed SYNs go through the program. Without the guard the
// SYNs enter the flow table and evict them (the control, logged); with it they go by the
// ring unrecorded once the CPU's new flows pass the threshold.
func TestSynFloodKeepsEstablishedFlows(t *testing.T) {
	requireRoot(t)
	// every run on one CPU: the flow table's LRU lists and the guard's window are per CPU
	pinCPU(t, 0)
	const (
		established = 100
		spoofed     = 1_000_000
		threshold   = 10_000
	)
	moved := func(threshold uint32) (moved int, unrecorded uint64) {
		lb, err := loadLB(Config{HashSeed: testSeed, EncapSource: lbAddr, EncapSource6: lbAddr6, MTU: 1600, MAC: lbMAC, SynFloodThreshold: threshold})
		if err != nil {
			t.Fatalf("load xdp_lb: %+v", err)
		}
		defer lb.Close()
		bes := testBackends(beAddrs)
		mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)})
		owners := make([]netip.Addr, established)
		for i := range owners {
			owners[i] = ackTo(t, lb, Flow{Src: client, Dst: vip, SrcPort: uint16(20000 + i), DstPort: 80, Proto: 6}, false)
		}
		// a new ring: every slot to backend 2, so a flow that lost its entry shows it
		ring := make([]uint32, ringLen)
		for i := range ring {
			ring[i] = 2
		}
		mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: ring})

		frame := packet(t, client, vip, tcp(1, 80, true, false))
		out := make([]byte, len(frame)+64)
		for i := range spoofed {
			// a new source address (198.19.x.y) and port for every SYN
			binary.BigEndian.PutUint32(frame[14+12:], 0xc6130000|uint32(i)&0xffff)
			binary.BigEndian.PutUint16(frame[14+20:], uint16(1024+i>>16))
			if ret, err := lb.objs.XdpLb.Run(ebpfRun(frame, out)); err != nil || ret != xdpTX {
				t.Fatalf("spoofed SYN %d: verdict %d, %v", i, ret, err)
			}
		}
		for i, want := range owners {
			if got := ackTo(t, lb, Flow{Src: client, Dst: vip, SrcPort: uint16(20000 + i), DstPort: 80, Proto: 6}, false); got != want {
				moved++
			}
		}
		st, err := lb.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return moved, st.Events["syn_unrecorded"]
	}

	off, _ := moved(0)
	on, unrecorded := moved(threshold)
	t.Logf("after %d spoofed SYNs and a ring change: without the guard %d of %d established flows moved backend; with it (threshold %d/s) %d moved, %d SYNs unrecorded",
		spoofed, off, established, threshold, on, unrecorded)
	if on != 0 {
		t.Errorf("with the guard %d of %d established flows lost their backend", on, established)
	}
	// all but a window's worth while the rate stays over the threshold; a machine so busy
	// that the rate dips under it in a window lets another window's worth in
	if unrecorded < spoofed*8/10 {
		t.Errorf("only %d of %d spoofed SYNs went unrecorded", unrecorded, spoofed)
	}
	if off == 0 {
		t.Errorf("control: without the guard no established flow lost its entry to %d spoofed SYNs; the test shows nothing", spoofed)
	}
}
