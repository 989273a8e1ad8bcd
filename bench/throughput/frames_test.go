package main

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/lbdproj/lbd/internal/dataplane"
	"golang.org/x/sys/unix"
)

// TestFrames runs the generator, xdp_lb and the sink one frame at a time (BPF_PROG_TEST_RUN
// without live frames, no namespaces): the generator's frames parse as TCP ACKs to the VIP
// from the flows it promises, xdp_lb sends them on encapsulated, and the sink counts them.
func TestFrames(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}

	lbMAC := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	genMAC := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	lb, err := dataplane.LoadDetached(dataplane.Config{HashSeed: hashSeed, EncapSource: lbOut, MTU: lbOutMTU})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	if _, err := applyVIP(lb, net.HardwareAddr{2, 0, 0, 0, 0, 3}, net.HardwareAddr{2, 0, 0, 0, 0, 4}, 0); err != nil {
		t.Fatal(err)
	}
	var sink sinkObjects
	if err := loadSinkObjects(&sink, nil); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	for _, tc := range []struct {
		name  string
		flows uint32
		syn   bool
		want  func(i int) (netip.Addr, uint16)
	}{
		{"same flow", 0, false, func(int) (netip.Addr, uint16) { return client, 40000 }},
		{"cycled", 3, false, func(i int) (netip.Addr, uint16) { return flowNet, uint16(i % 3) }},
		{"never repeat", ^uint32(0), false, func(i int) (netip.Addr, uint16) { return flowNet, uint16(i) }},
		{"syn flood", ^uint32(0), true, func(i int) (netip.Addr, uint16) { return flowNet, uint16(i) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pinCPU0(t)
			g, err := newGen(lbMAC, genMAC, tc.flows, tc.syn)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			// a page the LB wrote into before: the generator rewrites every header
			in := make([]byte, 60)
			for i := range in {
				in[i] = 0xa5
			}
			for i := range 5 {
				out := make([]byte, len(in))
				ret, err := g.XdpGen.Run(&ebpf.RunOptions{Data: in, DataOut: out})
				if err != nil || ret != 3 { // XDP_TX
					t.Fatalf("frame %d: gen returned %d, %v", i, ret, err)
				}
				p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
				eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
				ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
				if eth == nil || ip == nil || tcp == nil {
					t.Fatalf("frame %d does not parse: %v", i, p)
				}
				src, sport := tc.want(i)
				gotSrc, _ := netip.AddrFromSlice(ip.SrcIP)
				gotDst, _ := netip.AddrFromSlice(ip.DstIP)
				if eth.DstMAC.String() != lbMAC.String() || eth.SrcMAC.String() != genMAC.String() ||
					gotSrc != src || gotDst != vip || uint16(tcp.SrcPort) != sport || tcp.DstPort != 80 ||
					tcp.ACK == tc.syn || tcp.SYN != tc.syn || int(ip.Length) != len(out)-14 {
					t.Fatalf("frame %d: %v", i, p)
				}
				act, enc, err := lb.TestRun(out)
				if err != nil || act != 3 {
					t.Fatalf("frame %d: xdp_lb returned %d, %v", i, act, err)
				}
				if ret, err := sink.XdpSink.Run(&ebpf.RunOptions{Data: enc[:len(out)+20]}); err != nil || ret != 1 { // XDP_DROP
					t.Fatalf("frame %d: sink returned %d, %v", i, ret, err)
				}
			}
			c, err := sinkTotal(&sink)
			if err != nil {
				t.Fatal(err)
			}
			if c.Packets == 0 || c.Ipip != c.Packets {
				t.Fatalf("sink counted %+v, want every packet IPIP", c)
			}
		})
	}
}

// pinCPU0 keeps the calling goroutine on CPU 0 until it ends: the generator counts frames
// per CPU and puts the CPU in the flow, so its frames are predictable on one CPU only.
func pinCPU0(t *testing.T) {
	t.Helper()
	runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
	var cpus unix.CPUSet
	cpus.Set(0)
	if err := unix.SchedSetaffinity(0, &cpus); err != nil {
		t.Fatalf("pin to CPU 0: %v", err)
	}
}
