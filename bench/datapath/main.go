// Command datapath measures xdp_lb's cost per packet with BPF_PROG_TEST_RUN, one packet per
// call (the kernel does not restore the packet between repeats, so a repeat would see its
// own encapsulated output), beside two floors measured the same way in the same run.
//
//	go run ./bench/datapath [-rounds 40] [-per-round 500]
package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/consistenthash"
)

var (
	vip    = netip.MustParseAddr("198.18.0.10")
	client = netip.MustParseAddr("198.18.1.1")
	other  = netip.MustParseAddr("198.18.0.99")
)

// Katran's program measured one packet per call on this machine kind (issue #2).
var katran = map[string]float64{"lru hit (ack)": 183, "lru miss (distinct flows)": 692, "non-vip pass": 111}

func main() {
	rounds := flag.Int("rounds", 40, "rounds; every scenario runs in every round, interleaved")
	per := flag.Int("per-round", 500, "packets per scenario per round")
	backends := flag.Int("backends", 10, "backends behind the VIP")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "datapath: needs root to load BPF programs")
		os.Exit(1)
	}
	runtime.LockOSThread() // one core, one thread: less noise

	lb, err := dataplane.LoadDetached(dataplane.Config{HashSeed: 0x6c62640a, EncapSource: netip.MustParseAddr("198.18.0.2"), MTU: 1600})
	check(err)
	defer lb.Close()
	check(applyVIP(lb, *backends))
	var floors floorObjects
	check(loadFloorObjects(&floors, nil))
	defer floors.Close()

	// flow sync (bench/datapath/flowsync.go): the same VIP on LBs whose adopted-flow maps
	// hold flows, so a miss pays the adopted lookup, or finds its backend there
	fsync, err := newFlowSyncBench(*backends, *rounds**per+200)
	check(err)
	defer fsync.lb.Close()

	ack := frame(client, vip, 40000, false, true)
	syn := frame(client, vip, 40001, true, false)
	pass := frame(client, other, 40002, false, true)
	icmp := icmpFrame(client, other)
	missTpl := frame(client, vip, 1, false, true)
	var missN uint32

	type scenario struct {
		name string
		run  func() (uint32, time.Duration, error)
		want uint32
	}
	xdp := func(p *ebpf.Program, f []byte) func() (uint32, time.Duration, error) {
		return func() (uint32, time.Duration, error) { return p.Benchmark(f, 1, nil) }
	}
	lbRun := func(f []byte) func() (uint32, time.Duration, error) {
		return func() (uint32, time.Duration, error) { return lb.Measure(f) }
	}
	scenarios := []scenario{
		{"floor: XDP_PASS", xdp(floors.XdpPassFloor, ack), 2},
		{"floor: IPIP push + XDP_TX", xdp(floors.XdpIpipFloor, ack), 3},
		{"lru hit (ack)", lbRun(ack), 3},
		{"lru miss (distinct flows)", func() (uint32, time.Duration, error) {
			missN++ // a new source address and port for every packet
			f := missTpl
			f[14+12+2], f[14+12+3] = byte(missN>>16), byte(missN>>8)
			f[14+20], f[14+20+1] = byte(missN), byte(missN>>24)|0x80
			return lb.Measure(f)
		}, 3},
		{"lru miss, 1000 adopted flows", fsync.miss, 3},
		{"lru miss, adopted hit", fsync.hit, 3},
		{"syn", lbRun(syn), 3},
		{"non-vip pass", lbRun(pass), 2},
		{"icmp (non-vip)", lbRun(icmp), 2},
	}
	samples := make([][]time.Duration, len(scenarios))
	// warm up: first flows, JIT'd code and maps in cache
	for _, s := range scenarios {
		for range 200 {
			if _, _, err := s.run(); err != nil {
				check(err)
			}
		}
	}
	start := time.Now()
	for range *rounds {
		for i, s := range scenarios {
			for range *per {
				ret, took, err := s.run()
				check(err)
				if ret != s.want {
					check(fmt.Errorf("%s: action %d, want %d", s.name, ret, s.want))
				}
				samples[i] = append(samples[i], took)
			}
		}
	}

	fmt.Printf("xdp_lb data path, BPF_PROG_TEST_RUN one packet per call (kernel-timed), %d packets per scenario, %d backends, ring 65537\n",
		*rounds**per, *backends)
	fmt.Printf("kernel %s, %d CPUs, took %v\n\n", kernel(), runtime.NumCPU(), time.Since(start).Round(time.Millisecond))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario\tns/pkt median\tmean\tp90\t× XDP_PASS\t× IPIP floor\tKatran\tgoal 0.8×Katran\t\n")
	med := make([]float64, len(scenarios))
	for i := range scenarios {
		med[i] = median(samples[i])
	}
	for i, s := range scenarios {
		k, g := "", ""
		if v, ok := katran[s.name]; ok {
			k, g = fmt.Sprintf("%.0f", v), fmt.Sprintf("%.0f", 0.8*v)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t%s\t%s\t\n", s.name, med[i], mean(samples[i]), pct(samples[i], 0.9),
			med[i]/med[0], med[i]/med[1], k, g)
	}
	tw.Flush()
}

func applyVIP(lb *dataplane.LB, n int) error {
	var members []consistenthash.Member
	var bes []dataplane.Backend
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)})
		members = append(members, consistenthash.Member{Key: a.String(), Weight: 1})
		bes = append(bes, dataplane.Backend{Addr: a, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}, SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xff}})
	}
	ring, err := consistenthash.Build(consistenthash.Maglev, members, consistenthash.DefaultSize)
	if err != nil {
		return err
	}
	return lb.Apply([]dataplane.VIP{{Key: dataplane.VIPKey{Addr: vip, Port: 80, Proto: 6}, Backends: bes, Ring: ring}})
}

func frame(src, dst netip.Addr, sport uint16, syn, ack bool) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, SYN: syn, ACK: ack, Window: 512}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(eth, ip, tcp)
}

func icmpFrame(src, dst netip.Addr) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	return serialize(eth, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)}, gopacket.Payload(make([]byte, 32)))
}

func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	check(gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...))
	return buf.Bytes()
}

func median(d []time.Duration) float64 { return pct(d, 0.5) }

func pct(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[int(p*float64(len(s)-1))].Nanoseconds())
}

func mean(d []time.Duration) float64 {
	var t time.Duration
	for _, x := range d {
		t += x
	}
	return float64(t.Nanoseconds()) / float64(len(d))
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return string(b[:len(b)-1])
}

func check(err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "datapath: %+v\n", err)
		os.Exit(1)
	}
}
