package dataplane

import (
	"testing"

	"github.com/cilium/ebpf"
)

// skbCtx is the head of struct __sk_buff up to mark: what BPF_PROG_TEST_RUN lets a test set.
type skbCtx struct {
	Len, PktType, Mark uint32
}

func runProbe(t *testing.T, lb *LB, mark uint32, in []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(in)+64)
	opts := &ebpf.RunOptions{Data: in, DataOut: out, Context: skbCtx{Mark: mark}}
	ret, err := lb.objs.TcProbe.Run(opts)
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret, opts.DataOut
}

func TestTCProbeEncapsulatesMarkedProbes(t *testing.T) {
	lb := mustLoadLB(t)
	bes := testBackends(beAddrs)
	mustApply(t, lb, VIP{Key: webKey, Backends: bes, Ring: roundRobinRing(ringLen, 3)})

	// the LB's own probe to VIP:80, marked for backend 2, leaves encapsulated to backend 2
	probe := packet(t, lbAddr, vip, tcp(50000, 80, true, false))
	for i, b := range bes {
		mark, ok := lb.ProbeMark(webKey, b.Addr)
		if !ok {
			t.Fatalf("no probe mark for %s", b.Addr)
		}
		ret, out := runProbe(t, lb, mark, probe)
		if ret != tcxNext {
			t.Fatalf("backend %d: verdict %#x, want TCX_NEXT", i, ret)
		}
		if d := diffPackets(ipipExpected(t, b, l3(probe), true, 0, 0, 0), out); d != "" {
			t.Fatalf("backend %d: %s", i, d)
		}
	}
	// unmarked traffic (the host's own, gossip, …) is not touched
	if ret, out := runProbe(t, lb, 0, probe); ret != tcxNext || diffPackets(probe, out) != "" {
		t.Fatalf("unmarked packet: verdict %#x, changed: %s", ret, diffPackets(probe, out))
	}
	// a mark naming no backend is dropped and counted, never sent bare to the VIP
	if ret, _ := runProbe(t, lb, ProbeMarkBase|999, probe); ret != 2 /* TC_ACT_SHOT */ {
		t.Fatalf("stale mark: verdict %d, want TC_ACT_SHOT", ret)
	}
	st, _ := lb.Stats()
	if st.Verdicts["probe_tx"].Packets != 3 || st.Verdicts["probe_drop"].Packets != 1 {
		t.Errorf("verdicts %+v", st.Verdicts)
	}
}
