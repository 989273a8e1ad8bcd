// Command flowsync measures what flow sync costs (docs/ARCHITECTURE.md, "Flow sync"): how
// fast a node scans its flow table for the flows at risk, and how many bytes the flows at
// risk take on the wire, in a table of -flows flows of which about -risk are at risk.
//
//	go run ./bench/flowsync [-flows 100000] [-backends 100] [-rounds 20]
//
// The flows are real: ACKs of distinct flows through xdp_lb (BPF_PROG_TEST_RUN) fill its
// flow table; then one backend joins the VIP's backends (rendezvous moves 1/(n+1) of the
// ring), which puts about 1% of the flows at risk. The scan is the daemon's
// (internal/dataplane.FlowScanner). The bytes are sent between two real cluster nodes on
// loopback (memberlist streams, LZW-compressed and AES-GCM-encrypted), counted by
// memberlist's own tcp.sent counter.
package main

import (
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metrics "github.com/hashicorp/go-metrics"

	"github.com/lbdproj/lbd/bench/internal/host"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/internal/wait"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/consistenthash"
	"github.com/lbdproj/lbd/pkg/flowsync"
)

var vip = dataplane.VIPKey{Addr: netip.MustParseAddr("198.18.0.10"), Port: 80, Proto: 6}

func main() {
	nflows := flag.Int("flows", 100000, "flows in the table")
	nbe := flag.Int("backends", 100, "backends of the VIP before one more joins")
	rounds := flag.Int("rounds", 20, "scans to time")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "flowsync: needs root to load BPF programs")
		os.Exit(1)
	}
	runtime.LockOSThread() // the flows all enter one CPU's LRU list, which holds MAX_FLOWS / CPUs
	lb, err := dataplane.LoadDetached(dataplane.Config{HashSeed: 0x6c62640a, EncapSource: netip.MustParseAddr("198.18.0.2"), MTU: 1600})
	check(err)
	defer lb.Close()

	scanner := lb.NewFlowScanner()
	empty := timeScans(scanner, *rounds)
	check(applyVIP(lb, *nbe))
	start := time.Now()
	check(fill(lb, *nflows))
	filled := time.Since(start)
	check(applyVIP(lb, *nbe+1))

	var atRisk []dataplane.SharedFlow
	st, err := scanner.AtRisk(func(f dataplane.SharedFlow) { atRisk = append(atRisk, f) })
	check(err)
	full := timeScans(scanner, *rounds)

	fmt.Printf("flow sync cost: kernel %s, %d CPUs, Go %s\n", host.Kernel(), runtime.NumCPU(), runtime.Version())
	fmt.Printf("table: %d IPv4 flows in flows_v4, filled by %d ACKs through xdp_lb in %v\n",
		st.Scanned, *nflows, filled.Round(time.Millisecond))
	fmt.Printf("ring: rendezvous, 65537 slots; %d backends, then %d: %d flows at risk (%.2f%%)\n\n",
		*nbe, *nbe+1, len(atRisk), 100*float64(len(atRisk))/float64(st.Scanned))
	fmt.Printf("scan of both flow tables (BPF_MAP_LOOKUP_BATCH, %d scans, median [min–max]):\n", *rounds)
	fmt.Printf("  empty tables:     %8.2f ms [%.2f–%.2f]  (the walk over the hash buckets alone)\n", ms(median(empty)), ms(slices.Min(empty)), ms(slices.Max(empty)))
	fmt.Printf("  %6d flows:     %8.2f ms [%.2f–%.2f]  → %.1f M flows scanned/s\n", st.Scanned, ms(median(full)), ms(slices.Min(full)), ms(slices.Max(full)),
		float64(st.Scanned)/median(full).Seconds()/1e6)
	fmt.Printf("  a round waits at least 20 × its scan, so the scan takes at most 5%% of a CPU\n\n")

	// the bytes of the flows at risk after this change, and of exactly 1% of the table (a
	// subset of them, so the VIP and backends are the same)
	exact := atRisk[:min(len(atRisk), st.Scanned/100)]
	for _, set := range []struct {
		what  string
		flows []dataplane.SharedFlow
	}{{"the flows at risk after the change", atRisk}, {"exactly 1% of the table (a subset of them)", exact}} {
		msgs, err := flowsync.Encode(flowsync.Update{Node: "lb0", Share: set.flows})
		check(err)
		payload := 0
		for _, m := range msgs {
			payload += len(m)
		}
		wire, err := onTheWire(msgs)
		check(err)
		fmt.Printf("%d flows, %s, shared with one other node:\n", len(set.flows), set.what)
		fmt.Printf("  flow sync messages: %d bytes in %d (%.2f bytes a flow)\n", payload, len(msgs), float64(payload)/float64(len(set.flows)))
		fmt.Printf("  on the wire:        %d bytes (memberlist's stream after LZW and AES-GCM, by its tcp.sent counter; TCP/IP headers not counted)\n", wire)
		fmt.Printf("  per peer: %d bytes in the round after the change, then only what changes, and the whole set again every %v (%.0f B/s)\n\n",
			wire, flowsync.DefaultRefresh, float64(wire)/flowsync.DefaultRefresh.Seconds())
	}
}

// applyVIP serves the VIP with n backends on a rendezvous ring.
func applyVIP(lb *dataplane.LB, n int) error {
	var members []consistenthash.Member
	var bes []dataplane.Backend
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 18, byte(1 + i/200), byte(11 + i%200)})
		members = append(members, consistenthash.Member{Key: a.String(), Weight: 1})
		bes = append(bes, dataplane.Backend{Addr: a, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}, SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xff}})
	}
	ring, err := consistenthash.Build(consistenthash.Rendezvous, members, consistenthash.DefaultSize)
	if err != nil {
		return err
	}
	return lb.Apply([]dataplane.VIP{{Key: vip, Backends: bes, Ring: ring}})
}

// fill sends one ACK of each of n flows (distinct client addresses and ports) through xdp_lb.
func fill(lb *dataplane.LB, n int) error {
	frame := ack()
	for i := range n {
		binary.BigEndian.PutUint32(frame[14+12:], 0xc6130000|uint32(i>>4)) // 198.19.x.y
		binary.BigEndian.PutUint16(frame[14+20:], uint16(40000+i%16))
		fixIPChecksum(frame[14 : 14+20])
		action, _, err := lb.TestRun(frame)
		if err != nil {
			return err
		}
		if action != 3 { // XDP_TX
			return fmt.Errorf("flow %d: action %d, want XDP_TX", i, action)
		}
	}
	return nil
}

func ack() []byte {
	b := make([]byte, 14+20+20)
	copy(b[0:], []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00})
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], 40)
	copy(ip[16:], vip.Addr.AsSlice())
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[2:], vip.Port)
	tcp[12], tcp[13] = 5<<4, 0x10 // ACK
	binary.BigEndian.PutUint16(tcp[14:], 512)
	return b
}

func fixIPChecksum(h []byte) {
	h[10], h[11] = 0, 0
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
}

func timeScans(s *dataplane.FlowScanner, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		st, err := s.AtRisk(func(dataplane.SharedFlow) {})
		check(err)
		out[i] = st.Duration
	}
	return out
}

// tcpSent counts memberlist's tcp.sent bytes (its stream writes, after compression and
// encryption), from its go-metrics counter.
type tcpSent struct {
	metrics.BlackholeSink
	n atomic.Int64
}

func (s *tcpSent) IncrCounterWithLabels(key []string, val float32, _ []metrics.Label) {
	if strings.Join(key, ".") == "bench.memberlist.tcp.sent" {
		s.n.Add(int64(val))
	}
}

// onTheWire sends msgs from one cluster node to another on loopback and returns the bytes
// memberlist wrote for them (the smallest of five tries: push-pull may run meanwhile).
func onTheWire(msgs [][]byte) (int64, error) {
	sink := &tcpSent{}
	cfg := metrics.DefaultConfig("bench")
	cfg.EnableHostname, cfg.EnableRuntimeMetrics = false, false
	if _, err := metrics.NewGlobal(cfg, sink); err != nil { // replaces the previous call's
		return 0, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return 0, err
	}
	var mu sync.Mutex
	received := 0
	b, err := cluster.New(cluster.Options{NodeName: "lb1", Bind: netip.MustParseAddrPort("127.0.0.1:0"), SecretKey: key,
		OnFlows: func(m []byte) { mu.Lock(); received += len(m); mu.Unlock() }})
	if err != nil {
		return 0, err
	}
	defer func() { _ = b.Shutdown() }()
	a, err := cluster.New(cluster.Options{NodeName: "lb0", Bind: netip.MustParseAddrPort("127.0.0.1:0"), SecretKey: key, Join: []string{b.LocalAddr()}})
	if err != nil {
		return 0, err
	}
	defer func() { _ = a.Shutdown() }()
	if err := wait.Until(10*time.Second, 10*time.Millisecond, func() (bool, error) { return len(a.FlowPeers()) == 1, nil }); err != nil {
		return 0, fmt.Errorf("cluster of two: %w", err)
	}
	want := 0
	for _, m := range msgs {
		want += len(m)
	}
	best := int64(-1)
	for range 5 {
		mu.Lock()
		received = 0
		mu.Unlock()
		before := sink.n.Load()
		for _, m := range msgs {
			if err := a.SendFlows("lb1", m); err != nil {
				return 0, err
			}
		}
		if err := wait.Until(10*time.Second, time.Millisecond, func() (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			return received == want, nil
		}); err != nil {
			return 0, fmt.Errorf("receive: %w", err)
		}
		if n := sink.n.Load() - before; best < 0 || n < best {
			best = n
		}
	}
	return best, nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func check(err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "flowsync: %+v\n", err)
		os.Exit(1)
	}
}
