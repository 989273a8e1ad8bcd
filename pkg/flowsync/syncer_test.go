package flowsync

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/internal/wait"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakePath is a data path: the flows at risk are what the test says, the adopted maps a
// map, and a flow resolves when its backend is in serves.
type fakePath struct {
	mu       sync.Mutex
	risk     []dataplane.SharedFlow
	adopted  map[dataplane.Flow]dataplane.SharedFlow
	serves   map[netip.Addr]bool
	leftover []dataplane.SharedFlow
	hits     uint64
}

func newFakePath(serves ...netip.Addr) *fakePath {
	p := &fakePath{adopted: map[dataplane.Flow]dataplane.SharedFlow{}, serves: map[netip.Addr]bool{}}
	for _, a := range serves {
		p.serves[a] = true
	}
	return p
}

func (p *fakePath) AtRisk(visit func(dataplane.SharedFlow)) (dataplane.ScanStats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.risk {
		visit(f)
	}
	return dataplane.ScanStats{Scanned: 10 * len(p.risk), AtRisk: len(p.risk), Duration: time.Millisecond}, nil
}

func (p *fakePath) PutAdopted(flows []dataplane.SharedFlow) ([]dataplane.SharedFlow, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var un []dataplane.SharedFlow
	for _, f := range flows {
		if !p.serves[f.Backend] {
			un = append(un, f)
			continue
		}
		p.adopted[f.Flow] = f
	}
	return un, nil
}

func (p *fakePath) DeleteAdopted(flows []dataplane.Flow) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range flows {
		delete(p.adopted, f)
	}
	return nil
}

func (p *fakePath) ReadAdopted() ([]dataplane.SharedFlow, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.leftover {
		p.adopted[f.Flow] = f
	}
	return p.leftover, nil
}

func (p *fakePath) FlowSyncEvents() (map[string]uint64, error) {
	return map[string]uint64{"hit": p.hits, "stale": 0}, nil
}

// held is what the adopted maps hold.
func (p *fakePath) held(t *testing.T) map[dataplane.Flow]dataplane.SharedFlow {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.adopted)
}

// fakeNet carries messages between syncers; the test delivers them when it likes.
type fakeNet struct {
	mu      sync.Mutex
	nodes   map[string]*Syncer
	queue   []envelope
	down    map[string]bool // sends to these fail
	sent    map[string]int  // bytes by destination
	nodeSet []string
}

type envelope struct {
	to  string
	msg []byte
}

func newFakeNet() *fakeNet {
	return &fakeNet{nodes: map[string]*Syncer{}, down: map[string]bool{}, sent: map[string]int{}}
}

type fakeTransport struct {
	n    *fakeNet
	self string
}

func (t fakeTransport) Peers() []string {
	t.n.mu.Lock()
	defer t.n.mu.Unlock()
	var out []string
	for _, name := range t.n.nodeSet {
		if name != t.self {
			out = append(out, name)
		}
	}
	return out
}

func (t fakeTransport) Send(node string, msg []byte) error {
	t.n.mu.Lock()
	defer t.n.mu.Unlock()
	if t.n.down[node] {
		return errors.New("connection refused")
	}
	t.n.queue = append(t.n.queue, envelope{node, slices.Clone(msg)})
	t.n.sent[node] += len(msg)
	return nil
}

// deliver hands every queued message to its node.
func (n *fakeNet) deliver() {
	n.mu.Lock()
	q := n.queue
	n.queue = nil
	n.mu.Unlock()
	for _, e := range q {
		n.nodes[e.to].receive(e.msg)
	}
}

func (n *fakeNet) takeSent() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.sent
	n.sent = map[string]int{}
	return s
}

// clock is a settable clock for the syncers of a test.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

// node adds a syncer named name on path to the network.
func (n *fakeNet) node(t *testing.T, c *clock, name string, path *fakePath, reg prometheus.Registerer, tune func(*Options)) *Syncer {
	t.Helper()
	o := Options{Node: name, DataPath: path, Transport: fakeTransport{n, name}, Enabled: true,
		Interval: time.Second, Refresh: 30 * time.Second, TTL: 100 * time.Second, Now: c.now, Registerer: reg}
	if tune != nil {
		tune(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	n.nodes[name] = s
	n.nodeSet = append(n.nodeSet, name)
	n.mu.Unlock()
	return s
}

func flows(vip dataplane.VIPKey, be netip.Addr, from, n int) []dataplane.SharedFlow {
	var out []dataplane.SharedFlow
	for i := from; i < from+n; i++ {
		out = append(out, shared(vip, be, uint32(i), uint16(40000+i)))
	}
	return out
}

func byFlow(fs []dataplane.SharedFlow) map[dataplane.Flow]dataplane.SharedFlow {
	out := map[dataplane.Flow]dataplane.SharedFlow{}
	for _, f := range fs {
		out[f.Flow] = f
	}
	return out
}

func sameFlows(t *testing.T, what string, got, want map[dataplane.Flow]dataplane.SharedFlow) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("%s: %d flows, want %d (%v)", what, len(got), len(want), got)
	}
}

// The peers get the flows at risk, then only what changed, and the whole set at each
// refresh and after a failed send; a withdrawn flow leaves them at once.
func TestRoundsShareWhatChanged(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	n := newFakeNet()
	pa, pb, pc := newFakePath(), newFakePath(be1, be2), newFakePath(be1, be2)
	a := n.node(t, c, "lb0", pa, nil, nil)
	n.node(t, c, "lb1", pb, nil, nil)
	n.node(t, c, "lb2", pc, nil, nil)

	pa.risk = flows(web, be1, 0, 100)
	a.round(ctx)
	n.deliver()
	first := n.takeSent()
	sameFlows(t, "lb1 after the first round", pb.held(t), byFlow(pa.risk))
	sameFlows(t, "lb2 after the first round", pc.held(t), byFlow(pa.risk))
	if st := a.Status(); st.AtRisk != 100 || st.Shared != 100 || st.Peers != 2 || st.SentBytes == 0 {
		t.Errorf("sender status %+v", st)
	}
	// bytes follow the flows at risk: 6 a flow and one section per message
	if want := 2 + 3 + (3 + 4 + 2 + 1 + 4 + 1) + 100*6; first["lb1"] != want || first["lb2"] != want {
		t.Errorf("first round sent %v bytes, want %d to each", first, want)
	}

	c.advance(time.Second)
	a.round(ctx)
	if sent := n.takeSent(); len(sent) != 0 {
		t.Errorf("nothing changed, yet %v bytes were sent", sent)
	}

	// one flow is no longer at risk, two are new
	pa.risk = append(slices.Clone(pa.risk[1:]), flows(web, be2, 100, 2)...)
	c.advance(time.Second)
	a.round(ctx)
	n.deliver()
	sent := n.takeSent()
	if want := 2 + 3 + 2*(3+4+2) + (1 + 4 + 1) + 2*6 + (1) + 6; sent["lb1"] != want {
		t.Errorf("delta round sent %v bytes, want %d to each", sent, want)
	}
	sameFlows(t, "lb1 after the delta", pb.held(t), byFlow(pa.risk))

	// a send fails: that peer gets the whole set at the next round, the other the delta
	n.down["lb2"] = true
	pa.risk = append(pa.risk, flows(web, be1, 200, 1)...)
	c.advance(time.Second)
	a.round(ctx)
	n.deliver()
	delete(n.down, "lb2")
	pa.risk = append(pa.risk, flows(web, be1, 201, 1)...)
	c.advance(time.Second)
	a.round(ctx)
	n.deliver()
	sent = n.takeSent()
	if sent["lb2"] <= 10*sent["lb1"] {
		t.Errorf("after a failed send lb2 got %d bytes, lb1 %d: want the whole set to lb2", sent["lb2"], sent["lb1"])
	}
	sameFlows(t, "lb2 after it came back", pc.held(t), byFlow(pa.risk))

	// the refresh sends the whole set to everyone
	c.advance(30 * time.Second)
	a.round(ctx)
	sent = n.takeSent()
	if sent["lb1"] < 100*6 || sent["lb2"] < 100*6 {
		t.Errorf("refresh sent %v bytes", sent)
	}
}

// A receiver keeps a flow while a node shares it: two nodes may share one flow (it moved,
// both hold it), and it goes when the last withdraws it or falls silent for the TTL.
func TestAdoptedFlowsAge(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	n := newFakeNet()
	pa, pb, pc := newFakePath(), newFakePath(), newFakePath(be1)
	a := n.node(t, c, "lb0", pa, nil, nil)
	b := n.node(t, c, "lb1", pb, nil, nil)
	n.node(t, c, "lb2", pc, nil, nil)

	both := flows(web, be1, 0, 1)
	pa.risk = append(slices.Clone(both), flows(web, be1, 1, 5)...)
	pb.risk = slices.Clone(both)
	a.round(ctx)
	b.round(ctx)
	n.deliver()
	sameFlows(t, "lb2", pc.held(t), byFlow(pa.risk))
	// lb0 withdraws all: the flow lb1 still shares stays
	pa.risk = nil
	c.advance(time.Second)
	a.round(ctx)
	n.deliver()
	sameFlows(t, "lb2 after lb0 withdrew", pc.held(t), byFlow(both))
	// lb1 goes silent (it died): after the TTL its flow goes too
	delete(n.nodes, "lb1")
	n.nodeSet = []string{"lb0", "lb2"}
	c.advance(100*time.Second + time.Second)
	n.nodes["lb2"].round(ctx)
	sameFlows(t, "lb2 after the TTL", pc.held(t), nil)
}

// Flows for backends this node does not serve are kept aside, and written once an apply
// makes them resolve; the table is bounded per family.
func TestUnresolvedAndFull(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	n := newFakeNet()
	pa, pb := newFakePath(), newFakePath(be1)
	a := n.node(t, c, "lb0", pa, nil, nil)
	b := n.node(t, c, "lb1", pb, nil, func(o *Options) { o.MaxFlows = 8 })
	pa.risk = append(flows(web, be1, 0, 4), flows(web, be2, 4, 6)...)
	a.round(ctx)
	n.deliver()
	if st := b.Status(); st.Adopted != 4 || st.Unresolved != 4 {
		t.Errorf("status %+v: want 4 adopted, 4 unresolved (and 2 refused: the table holds 8)", st)
	}
	if got := testutil.ToFloat64(b.m.full); got != 2 {
		t.Errorf("%v flows refused, want 2", got)
	}
	// an apply adds be2 here
	pb.serves[be2] = true
	b.resolveAgain()
	if st := b.Status(); st.Adopted != 8 || st.Unresolved != 0 {
		t.Errorf("after be2 resolved: status %+v", st)
	}
	// and takes be1 away again: its flows leave the data path
	delete(pb.serves, be1)
	b.resolveAgain()
	held := pb.held(t)
	for _, f := range held {
		if f.Backend == be1 {
			t.Fatalf("flow %+v of a backend no longer served still in the data path", f)
		}
	}
	if st := b.Status(); st.Adopted != 4 || st.Unresolved != 4 {
		t.Errorf("after be1 left: status %+v", st)
	}
}

func TestSwitchedOff(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	n := newFakeNet()
	pa, pb := newFakePath(), newFakePath(be1)
	a := n.node(t, c, "lb0", pa, nil, nil)
	b := n.node(t, c, "lb1", pb, nil, nil)
	pa.risk = flows(web, be1, 0, 3)
	a.round(ctx)
	n.deliver()
	if len(pb.held(t)) != 3 {
		t.Fatalf("lb1 holds %d", len(pb.held(t)))
	}
	// lb1 turns sync off: it forgets what it adopted and ignores what comes
	b.setEnabled(false)
	if len(pb.held(t)) != 0 {
		t.Errorf("switched off, lb1 still holds %d adopted flows", len(pb.held(t)))
	}
	pa.risk = flows(web, be1, 0, 5)
	a.round(ctx)
	n.deliver()
	if len(pb.held(t)) != 0 {
		t.Errorf("switched off, lb1 adopted %d flows", len(pb.held(t)))
	}
	// lb0 turns it off: no scan, nothing sent
	n.takeSent()
	a.setEnabled(false)
	pa.risk = flows(web, be1, 0, 9)
	a.round(ctx)
	if sent := n.takeSent(); sent["lb1"] != 0 {
		t.Errorf("switched off, lb0 sent %v", sent)
	}
	if st := a.Status(); st.Enabled {
		t.Errorf("status says enabled")
	}
}

// A run that starts with sync off removes what a previous run left pinned.
func TestStartedOffPurgesPins(t *testing.T) {
	c := newClock()
	n := newFakeNet()
	p := newFakePath(be1)
	p.leftover = flows(web, be1, 0, 3)
	n.node(t, c, "lb0", p, nil, func(o *Options) { o.Enabled = false })
	if held := p.held(t); len(held) != 0 {
		t.Errorf("started off, the data path still holds %d adopted flows", len(held))
	}
}

// Adopted flows a previous run left pinned are taken back, and age like the others.
func TestRestoredFromPins(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	n := newFakeNet()
	p := newFakePath(be1)
	p.leftover = flows(web, be1, 0, 3)
	s := n.node(t, c, "lb0", p, nil, nil)
	if st := s.Status(); st.Adopted != 3 {
		t.Fatalf("restored %d adopted flows, want 3", st.Adopted)
	}
	sameFlows(t, "after restart", p.held(t), byFlow(p.leftover))
	c.advance(101 * time.Second)
	s.round(ctx)
	sameFlows(t, "after the TTL", p.held(t), nil)
}

func TestMetrics(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	n := newFakeNet()
	reg := prometheus.NewPedanticRegistry()
	pa, pb := newFakePath(), newFakePath(be1)
	a := n.node(t, c, "lb0", pa, reg, nil)
	regB := prometheus.NewPedanticRegistry()
	b := n.node(t, c, "lb1", pb, regB, nil)
	pa.risk = flows(web, be1, 0, 7)
	pb.hits = 5
	a.round(ctx)
	n.deliver()
	b.round(ctx)
	want := `
# HELP lbd_flowsync_flows_at_risk Flows in this node's tables whose backend its rings no longer pick, at the last scan.
# TYPE lbd_flowsync_flows_at_risk gauge
lbd_flowsync_flows_at_risk 7
# HELP lbd_flowsync_flows_shared Flows this node shares with the other LB nodes (its flows at risk, on backends that are not down).
# TYPE lbd_flowsync_flows_shared gauge
lbd_flowsync_flows_shared 7
# HELP lbd_flowsync_flows_scanned_total Flow-table entries read by flow sync's scans for the flows at risk.
# TYPE lbd_flowsync_flows_scanned_total counter
lbd_flowsync_flows_scanned_total 70
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lbd_flowsync_flows_at_risk",
		"lbd_flowsync_flows_shared", "lbd_flowsync_flows_scanned_total"); err != nil {
		t.Error(err)
	}
	wantB := `
# HELP lbd_flowsync_adopted_lookups_total Flow-table misses that found an adopted flow: hit (the moved flow kept its backend) or stale (its backend is down, gone or of another VIP here, and the ring decided).
# TYPE lbd_flowsync_adopted_lookups_total counter
lbd_flowsync_adopted_lookups_total{result="hit"} 5
lbd_flowsync_adopted_lookups_total{result="stale"} 0
# HELP lbd_flowsync_flows_adopted Flows other LB nodes shared that this node's data path holds.
# TYPE lbd_flowsync_flows_adopted gauge
lbd_flowsync_flows_adopted 7
`
	if err := testutil.GatherAndCompare(regB, strings.NewReader(wantB), "lbd_flowsync_adopted_lookups_total",
		"lbd_flowsync_flows_adopted"); err != nil {
		t.Error(err)
	}
	if got, sent := testutil.ToFloat64(collectorNamed(t, b, "lbd_flowsync_received_bytes_total")), a.Status().SentBytes; uint64(got) != sent || sent == 0 {
		t.Errorf("lb1 received %v bytes, lb0 sent %d", got, sent)
	}
	b.Unregister(regB)
	if mfs, _ := regB.Gather(); len(mfs) != 0 {
		t.Errorf("%d metric families left after Unregister", len(mfs))
	}
}

func collectorNamed(t *testing.T, s *Syncer, name string) prometheus.Collector {
	t.Helper()
	for _, c := range s.m.collectors() {
		ch := make(chan *prometheus.Desc, 4)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			if strings.Contains(d.String(), `"`+name+`"`) {
				return c
			}
		}
	}
	t.Fatalf("no collector %s", name)
	return nil
}

// Run drives rounds by itself and applies what arrives; Changed runs a round at once.
func TestRunLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newFakeNet()
	pa, pb := newFakePath(), newFakePath(be1)
	c := &clock{t: time.Now()}
	a := n.node(t, c, "lb0", pa, nil, func(o *Options) { o.Interval = time.Hour; o.Now = time.Now })
	b := n.node(t, c, "lb1", pb, nil, func(o *Options) { o.Now = time.Now })
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	go b.Run(ctx)
	pa.mu.Lock()
	pa.risk = flows(web, be1, 0, 4)
	pa.mu.Unlock()
	a.Changed("rings-2")
	err := wait.Until(10*time.Second, 10*time.Millisecond, func() (bool, error) {
		n.mu.Lock()
		q := n.queue
		n.queue = nil
		n.mu.Unlock()
		for _, e := range q {
			n.nodes[e.to].Receive(e.msg)
		}
		return b.Status().Adopted == 4 && a.Status().Rings == "rings-2", nil
	})
	if err != nil {
		t.Fatalf("lb1 status %+v, lb0 %+v: %v", b.Status(), a.Status(), err)
	}
	cancel()
	<-done
}
