package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lbdproj/lbd/bench/internal/host"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/consistenthash"
)

// scenario is one row: a program and the frame it is given.
type scenario struct {
	name  string
	key   string // in the JSON
	floor bool
	lb    bool // xdp_lb (else a floor program)
	prog  *ebpf.Program
	frame []byte
	vary  bool          // a new flow (source address and port) every packet
	want  uint32        // the XDP action it must return
	on    *dataplane.LB // the xdp_lb prog belongs to, when not the bench's own (flowsync.go)
}

// Results is what a run measured, as -json writes it.
type Results struct {
	Kernel    string         `json:"kernel"`
	CPU       string         `json:"cpu"`
	CPUs      int            `json:"cpus"`
	PinnedCPU int            `json:"pinned_cpu"` // -1: not pinned
	Backends  int            `json:"backends"`
	Rounds    int            `json:"rounds"`
	BPFStats  bool           `json:"bpf_stats_enabled"`
	Programs  []ProgramInfo  `json:"programs"`
	Paths     []Path         `json:"paths"`
	Methods   []MethodResult `json:"methods"`
}

// MethodResult is one method's figures.
type MethodResult struct {
	Method      string `json:"method"` // call or wrap
	Description string `json:"description"`
	Samples     int    `json:"samples_per_scenario"`
	RunsPer     int    `json:"runs_per_sample"`
	// the share of the XDP_PASS floor's samples on a 10 ns grid (call method): the clock's
	// resolution shows in the short runs
	ClockGrid float64 `json:"pass_floor_on_10ns_grid,omitempty"`
	Seconds   float64 `json:"seconds"`
	Rows      []Row   `json:"rows"`
}

// Row is a scenario's figures by one method. Net is the time less the wrapper's own
// (the wrap method only); the ratios are medians over rounds of the per-round ratios.
type Row struct {
	Scenario string  `json:"scenario"`
	Key      string  `json:"key"`
	Floor    bool    `json:"floor"`
	Median   float64 `json:"ns_median"`
	P10      float64 `json:"ns_p10"`
	P90      float64 `json:"ns_p90"`
	Net      float64 `json:"ns_net,omitempty"`
	XPass    float64 `json:"x_pass_floor,omitempty"`
	XIPIP    float64 `json:"x_ipip_floor"`
	// a new flow's row (miss) as a ratio to the flow-insert floor: what xdp_lb spends on a
	// new flow beyond the lookup and insert every stateful balancer pays
	XInsert   float64   `json:"x_insert_floor,omitempty"`
	RoundMeds []float64 `json:"round_medians"`
}

type bench struct {
	lb        *dataplane.LB
	flowSync  *dataplane.LB // holds adopted flows (flowsync.go)
	floors    floorObjects
	wrap      wrapObjects
	scenarios []scenario
}

func newBench() (_ *bench, err error) {
	b := &bench{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.lb, err = dataplane.LoadDetached(lbConfig()); err != nil {
		return nil, err
	}
	if err := applyVIP(b.lb, *nBE); err != nil {
		return nil, err
	}
	if err := loadFloors(&b.floors, lbConfig().FlowTableSize); err != nil {
		return nil, fmt.Errorf("load floors: %w", err)
	}
	if err := loadWrapObjects(&b.wrap, nil); err != nil {
		return nil, fmt.Errorf("load wrapper: %w", err)
	}
	ack := frame(client, vip, 40000, false, true)
	lbp := b.lb.XDPProgram()
	b.scenarios = []scenario{
		{name: "floor: XDP_PASS", key: "floor_pass", floor: true, prog: b.floors.XdpPassFloor, frame: ack, want: 2},
		{name: "floor: IPIP push + XDP_TX", key: "floor_ipip", floor: true, prog: b.floors.XdpIpipFloor, frame: ack, want: 3},
		{name: "floor: flow insert + IPIP push + XDP_TX", key: "floor_insert", floor: true, prog: b.floors.XdpInsertFloor,
			frame: frame(client, vip, 1, false, true), vary: true, want: 3},
		{name: "lru hit (ack)", key: "hit", lb: true, prog: lbp, frame: ack, want: 3},
		{name: "lru miss (distinct flows)", key: "miss", lb: true, prog: lbp, frame: frame(client, vip, 1, false, true), vary: true, want: 3},
		{name: "syn", key: "syn", lb: true, prog: lbp, frame: frame(client, vip, 40001, true, false), want: 3},
		{name: "non-vip pass", key: "pass", lb: true, prog: lbp, frame: frame(client, other, 40002, false, true), want: 2},
		{name: "icmp (non-vip)", key: "icmp", lb: true, prog: lbp, frame: icmpFrame(client, other), want: 2},
	}
	b.scenarios = append(b.scenarios, edgeScenarios(lbp)...)
	if err := b.addFlowSync(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *bench) close() {
	if b.lb != nil {
		b.lb.Close()
	}
	if b.flowSync != nil {
		b.flowSync.Close()
	}
	b.floors.Close()
	b.wrap.Close()
}

// measureCall runs one packet per BPF_PROG_TEST_RUN call; a sample is the kernel's time
// for that call's one run.
func (b *bench) measureCall() (MethodResult, error) {
	scs := b.scenarios
	var n uint32
	sample := func(s scenario) (uint32, time.Duration, error) {
		f := s.frame
		if s.vary {
			n++
			f = setFlow(slices.Clone(f), missCall, n)
		}
		return s.prog.Benchmark(f, 1, nil)
	}
	samples, err := b.rounds(scs, *perRound, sample)
	if err != nil {
		return MethodResult{}, err
	}
	mr := MethodResult{
		Method: "call",
		Description: "BPF_PROG_TEST_RUN, one packet per call (Repeat 1), the kernel's time for the call's one run: " +
			"it includes two clock reads, the bottom-half toggling, the indirect call into the program, and caches the system call disturbed",
		Samples: *rounds * *perRound, RunsPer: 1,
	}
	mr.Rows = rows(scs, samples, nil)
	mr.ClockGrid = onGrid(slices.Concat(samples[0]...))
	return mr, nil
}

// measureWrap runs each program -repeat times per call through the restoring wrapper; a
// sample is the kernel's time per run of one call. The XDP_PASS floor run through the
// wrapper is the wrapper's own cost (restore + tail call + an empty program), and the
// same with a new flow each run is the miss scenario's wrapper cost.
func (b *bench) measureWrap() (MethodResult, error) {
	scs := slices.Clone(b.scenarios)
	miss := slices.IndexFunc(scs, func(s scenario) bool { return s.key == "miss" })
	// the wrapper floor with a new flow each run, after the XDP_PASS floor
	scs = slices.Insert(scs, 1, scenario{name: "floor: wrapper, new flow per run", key: "floor_wrap_vary", floor: true,
		prog: b.floors.XdpPassFloor, frame: scs[miss].frame, vary: true, want: 2})
	cur := -1
	sample := func(i int) func(scenario) (uint32, time.Duration, error) {
		return func(s scenario) (uint32, time.Duration, error) {
			if cur != i { // the template and the target, outside the timed calls
				if err := b.setWrap(s); err != nil {
					return 0, 0, err
				}
				cur = i
			}
			w := b.wrap.XdpWrap
			if s.vary {
				w = b.wrap.XdpWrapVary
			}
			return w.Benchmark(s.frame, *repeat, nil)
		}
	}
	samples, err := b.roundsIdx(scs, *calls, sample)
	if err != nil {
		return MethodResult{}, err
	}
	mr := MethodResult{
		Method: "wrap",
		Description: fmt.Sprintf("BPF_PROG_TEST_RUN with Repeat %d through a wrapper (bench/bpf/wrap.c) that restores the frame "+
			"and tail-calls the program; a sample is the kernel's time per run of one call; net = time less the wrapper floor "+
			"(the wrapper tail-calling XDP_PASS; with a new flow per run for the miss row)", *repeat),
		Samples: *rounds * *calls, RunsPer: *repeat,
	}
	wrapFloor := map[bool]int{false: 0, true: 1} // the wrapper floor row for vary false/true
	mr.Rows = rows(scs, samples, wrapFloor)
	return mr, nil
}

// setWrap puts s's frame in the wrapper's template and s's program in its tail-call slot.
func (b *bench) setWrap(s scenario) error {
	if len(s.frame) > 128 {
		return fmt.Errorf("%s: frame of %d bytes, the wrapper's template holds 128", s.name, len(s.frame))
	}
	var t wrapTpl
	t.Len = uint32(len(s.frame))
	copy(t.Data[:], s.frame)
	if err := b.wrap.Tpl.Put(uint32(0), &t); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	if err := b.wrap.Target.Put(uint32(0), s.prog); err != nil {
		return fmt.Errorf("tail-call target: %w", err)
	}
	return nil
}

func (b *bench) rounds(scs []scenario, per int, sample func(scenario) (uint32, time.Duration, error)) ([][][]time.Duration, error) {
	return b.roundsIdx(scs, per, func(int) func(scenario) (uint32, time.Duration, error) { return sample })
}

// roundsIdx runs every scenario per times in each round, after a warm-up, and returns the
// samples by scenario and round. Every sample's action is checked.
func (b *bench) roundsIdx(scs []scenario, per int, sample func(int) func(scenario) (uint32, time.Duration, error)) ([][][]time.Duration, error) {
	out := make([][][]time.Duration, len(scs))
	// warm-up: first flows, JIT'd code and maps in cache
	for i, s := range scs {
		f := sample(i)
		for range min(per, 200) {
			if _, _, err := f(s); err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
		}
	}
	for range *rounds {
		for i, s := range scs {
			f := sample(i)
			r := make([]time.Duration, 0, per)
			for range per {
				ret, took, err := f(s)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", s.name, err)
				}
				if ret != s.want {
					return nil, fmt.Errorf("%s: action %d, want %d", s.name, ret, s.want)
				}
				r = append(r, took)
			}
			out[i] = append(out[i], r)
		}
	}
	return out, nil
}

// rows sums up the samples. With wrapFloor (the wrap method), net is a row's median less
// that of its wrapper floor, and the ratios are of net times; otherwise of the times.
func rows(scs []scenario, samples [][][]time.Duration, wrapFloor map[bool]int) []Row {
	passIdx, ipipIdx, insertIdx := -1, -1, -1
	for i, s := range scs {
		switch s.key {
		case "floor_pass":
			passIdx = i
		case "floor_ipip":
			ipipIdx = i
		case "floor_insert":
			insertIdx = i
		}
	}
	newFlow := func(s scenario) bool { return s.vary && !s.floor && insertIdx >= 0 }
	var out []Row
	for i, s := range scs {
		all := slices.Concat(samples[i]...)
		r := Row{Scenario: s.name, Key: s.key, Floor: s.floor, Median: pct(all, 0.5), P10: pct(all, 0.1), P90: pct(all, 0.9)}
		// per-round ratios, then their median: the host's speed drifts between rounds
		var xp, xi, xn []float64
		for k := range samples[i] {
			m := pct(samples[i][k], 0.5)
			r.RoundMeds = append(r.RoundMeds, m)
			if wrapFloor == nil {
				xp = append(xp, m/pct(samples[passIdx][k], 0.5))
				xi = append(xi, m/pct(samples[ipipIdx][k], 0.5))
				if newFlow(s) {
					xn = append(xn, m/pct(samples[insertIdx][k], 0.5))
				}
				continue
			}
			wf := pct(samples[wrapFloor[s.vary]][k], 0.5)
			ipip := pct(samples[ipipIdx][k], 0.5) - pct(samples[wrapFloor[false]][k], 0.5)
			xi = append(xi, (m-wf)/ipip)
			if newFlow(s) {
				xn = append(xn, (m-wf)/(pct(samples[insertIdx][k], 0.5)-wf))
			}
		}
		r.XInsert = host.Median(xn)
		if wrapFloor == nil {
			r.XPass = host.Median(xp)
		} else {
			r.Net = r.Median - pct(slices.Concat(samples[wrapFloor[s.vary]]...), 0.5)
		}
		r.XIPIP = host.Median(xi)
		out = append(out, r)
	}
	return out
}

// onGrid is the share of samples that are a multiple of 10 ns or one more: on this VM the
// kernel's clock moves in steps of about 10 ns, so the short runs' times fall there (a
// longer time drifts off the grid by the steps' excess over 10 ns). With a clock of 1 ns
// steps it would be about 0.2.
func onGrid(d []time.Duration) float64 {
	n := 0
	for _, x := range d {
		if r := x.Nanoseconds() % 10; r == 0 || r == 1 {
			n++
		}
	}
	return float64(n) / float64(len(d))
}

func applyVIP(lb *dataplane.LB, n int) error {
	var members []consistenthash.Member
	var bes []dataplane.Backend
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)})
		members = append(members, consistenthash.Member{Key: a.String(), Weight: 1})
		bes = append(bes, dataplane.Backend{Addr: a, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}, SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xff}})
	}
	ring, err := consistenthash.Build(consistenthash.DefaultAlgorithm, members, consistenthash.DefaultSize)
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

// setFlow makes f (an IPv4 TCP frame) flow n of the /16 of base: the address's low 16
// bits are n>>16, the source port n's low 16, checksums recomputed (as bench/bpf/wrap.c
// does, from another /16).
func setFlow(f []byte, base netip.Addr, n uint32) []byte {
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.NoCopy)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	b := base.As4()
	binary.BigEndian.PutUint16(b[2:], uint16(n>>16))
	ip.SrcIP = b[:]
	tcp.SrcPort = layers.TCPPort(uint16(n))
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
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(errors.Join(errors.New("serialize a benchmark frame"), err)) // the frames are fixed: a bug
	}
	return buf.Bytes()
}

func pct(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[int(p*float64(len(s)-1))].Nanoseconds())
}

// loadFloors loads the floor programs, the insert floor's table as large as xdp_lb's flow
// tables (flows entries).
func loadFloors(objs *floorObjects, flows uint32) error {
	spec, err := loadFloor()
	if err != nil {
		return err
	}
	spec.Maps["floor_flows"].MaxEntries = flows
	return spec.LoadAndAssign(objs, nil)
}
