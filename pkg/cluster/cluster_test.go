package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/wait"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var (
	b1 = key("web/198.18.0.11")
	b2 = key("web/198.18.0.12")
	b3 = key("web/198.18.0.13")
	b4 = key("dns/198.18.0.14")
)

// key parses "vip/address" as the wire does.
func key(s string) BackendKey {
	var k BackendKey
	if err := k.UnmarshalText([]byte(s)); err != nil {
		panic(err)
	}
	return k
}

const (
	// generous bounds for a loaded 2-core CI machine; the measured times are
	// logged
	formTimeout      = 10 * time.Second
	propagateTimeout = 5 * time.Second
	// failure detection is ~2.5-3.5s (memberlistConfig)
	detectTimeout = 10 * time.Second
)

var (
	testKey  = bytes.Repeat([]byte{0x42}, 32)
	otherKey = bytes.Repeat([]byte{0x24}, 32)
)

// testNode is one cluster node on 127.0.0.1 with its own pedantic registry.
type testNode struct {
	*Cluster
	name    string
	reg     *prometheus.Registry
	changes atomic.Int64 // OnChange calls

	mu       sync.Mutex
	verdicts []map[BackendKey]bool // Verdict() seen in each OnChange call
}

type nodeOpt func(*Options)

func withQuorum(q Quorum) nodeOpt { return func(o *Options) { o.Quorum = q } }
func withDigest(d string) nodeOpt { return func(o *Options) { o.ConfigDigest = d } }
func withKey(k []byte) nodeOpt    { return func(o *Options) { o.SecretKey = k } }
func withPort(p int) nodeOpt {
	return func(o *Options) { o.Bind = netip.AddrPortFrom(o.Bind.Addr(), uint16(p)) }
}
func withJoin(seeds ...string) nodeOpt   { return func(o *Options) { o.Join = seeds } }
func joining(nodes ...*testNode) nodeOpt { return withJoin(addrs(nodes...)...) }

func addrs(nodes ...*testNode) []string {
	var a []string
	for _, n := range nodes {
		a = append(a, n.LocalAddr())
	}
	return a
}

func startNode(t *testing.T, name string, opts ...nodeOpt) *testNode {
	t.Helper()
	n := &testNode{name: name, reg: prometheus.NewPedanticRegistry()}
	inflight := atomic.Int32{}
	started := make(chan struct{}) // n.Cluster is set
	o := Options{
		NodeName:     name,
		Bind:         netip.MustParseAddrPort("127.0.0.1:0"),
		SecretKey:    testKey,
		ConfigDigest: "digest-1",
		Registerer:   n.reg,
		Logger:       testLogger(t, name),
		OnChange: func() {
			if inflight.Add(1) != 1 {
				t.Errorf("%s: OnChange called concurrently", name)
			}
			defer inflight.Add(-1)
			<-started
			n.changes.Add(1)
			v := n.Verdict() // must not deadlock: OnChange holds no lock
			n.mu.Lock()
			n.verdicts = append(n.verdicts, v)
			n.mu.Unlock()
		},
	}
	for _, opt := range opts {
		opt(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	n.Cluster = c
	close(started)
	t.Cleanup(func() {
		if err := c.Shutdown(); err != nil {
			t.Errorf("shutdown %s: %v", name, err)
		}
	})
	return n
}

// startCluster starts nodes "a", "b", … joining "a" and waits until every
// node sees all the others.
func startCluster(t *testing.T, size int, opts ...nodeOpt) []*testNode {
	t.Helper()
	var nodes []*testNode
	for i := range size {
		name := string(rune('a' + i))
		nodeOpts := opts
		if i > 0 {
			nodeOpts = append(slices.Clone(opts), joining(nodes[0]))
		}
		nodes = append(nodes, startNode(t, name, nodeOpts...))
	}
	took := eventually(t, formTimeout, "cluster forms", func() error {
		return allMembers(nodes, size)
	})
	t.Logf("%d nodes formed a cluster in %v", size, took)
	return nodes
}

func allMembers(nodes []*testNode, want int) error {
	for _, n := range nodes {
		if got := liveMembers(n); len(got) != want {
			return fmt.Errorf("%s sees %v live, want %d", n.name, got, want)
		}
	}
	return nil
}

func liveMembers(n *testNode) []string {
	var live []string
	for _, m := range n.Status().Members {
		if m.State == "alive" || m.State == "leaving" {
			live = append(live, m.Name)
		}
	}
	return live
}

// eventually polls cond (internal/wait) until it returns nil and returns how long that
// took, or fails the test at the deadline with cond's last error.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	if err := wait.Until(timeout, 5*time.Millisecond, func() (bool, error) {
		err := cond()
		return err == nil, err
	}); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return time.Since(start)
}

// verdictsAre checks that every node's verdict is want.
func verdictsAre(want map[BackendKey]bool, nodes ...*testNode) func() error {
	return func() error {
		for _, n := range nodes {
			if got := n.Verdict(); !maps.Equal(got, want) {
				return fmt.Errorf("%s: verdict %v, want %v", n.name, got, want)
			}
		}
		return nil
	}
}

// allSee checks that every node holds every node's current state.
func allSee(nodes []*testNode) func() error {
	return func() error {
		for _, n := range nodes {
			if err := seesView(n, nodes...)(); err != nil {
				return err
			}
		}
		return nil
	}
}

// seesView checks that every node holds node's current state.
func seesView(node *testNode, nodes ...*testNode) func() error {
	return func() error {
		want := node.ownVersion()
		for _, n := range nodes {
			for _, m := range n.Status().Members {
				if m.Name == node.name && m.ViewVersion != want {
					return fmt.Errorf("%s has %s's view version %d, want %d", n.name, node.name, m.ViewVersion, want)
				}
			}
		}
		return nil
	}
}

func (n *testNode) ownVersion() uint64 {
	n.Cluster.mu.Lock()
	defer n.Cluster.mu.Unlock()
	return n.Cluster.states[n.name].Version
}

func TestNodeAloneDecidesAlone(t *testing.T) {
	a := startNode(t, "a")
	a.SetLocal(map[BackendKey]bool{b1: true, b2: false})
	// no gossip involved: the verdict is there when SetLocal returns
	if got, want := a.Verdict(), map[BackendKey]bool{b1: true, b2: false}; !maps.Equal(got, want) {
		t.Errorf("Verdict = %v, want %v", got, want)
	}
	st := a.Status()
	if len(st.Members) != 1 || !st.Members[0].Self || st.Members[0].State != "alive" || !st.Members[0].Voter {
		t.Errorf("Status.Members = %+v, want only this node, alive and voting", st.Members)
	}
	if !st.FingerprintsAgree {
		t.Error("a node alone disagrees with itself")
	}
	eventually(t, propagateTimeout, "OnChange", func() error {
		if a.changes.Load() == 0 {
			return errors.New("not called")
		}
		return nil
	})
	if err := testutil.GatherAndCompare(a.reg, strings.NewReader(`
# HELP lbd_cluster_members Live LB nodes in the cluster (alive or suspect), this one included.
# TYPE lbd_cluster_members gauge
lbd_cluster_members 1
# HELP lbd_cluster_view_updates_total Node views accepted: this node's changes and newer versions from other nodes.
# TYPE lbd_cluster_view_updates_total counter
lbd_cluster_view_updates_total 1
`), "lbd_cluster_members", "lbd_cluster_view_updates_total"); err != nil {
		t.Error(err)
	}

	// the same view again is no change: no new version
	v := a.ownVersion()
	a.SetLocal(map[BackendKey]bool{b2: false, b1: true})
	if a.ownVersion() != v {
		t.Error("SetLocal with an unchanged view bumped the version")
	}
}

func TestNewErrors(t *testing.T) {
	base := Options{NodeName: "a", Bind: netip.MustParseAddrPort("127.0.0.1:0"), SecretKey: testKey}
	tests := []struct {
		name   string
		change func(*Options)
		want   error
	}{
		{"no key", func(o *Options) { o.SecretKey = nil }, ErrNoSecret},
		{"short key", func(o *Options) { o.SecretKey = make([]byte, 15) }, ErrBadSecret},
		{"empty non-nil key", func(o *Options) { o.SecretKey = []byte{} }, ErrBadSecret},
		{"bad quorum", func(o *Options) { o.Quorum = "most" }, ErrBadQuorum},
		{"no name", func(o *Options) { o.NodeName = "" }, nil},
		{"long digest", func(o *Options) { o.ConfigDigest = strings.Repeat("x", maxDigestLen+1) }, nil},
		{"bad bind address", func(o *Options) { o.Bind = netip.MustParseAddrPort("198.51.100.1:0") }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			o.Registerer = prometheus.NewPedanticRegistry()
			tt.change(&o)
			c, err := New(o)
			if err == nil {
				_ = c.Shutdown()
				t.Fatal("New succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("New error = %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("insecure allowed when asked", func(t *testing.T) {
		o := base
		o.SecretKey, o.Insecure = nil, true
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Shutdown()
	})

	t.Run("registry in use", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		o := base
		o.Registerer = reg
		a, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Shutdown() })
		o.NodeName = "b"
		if b, err := New(o); err == nil {
			_ = b.Shutdown()
			t.Fatal("second node registered the same metrics")
		}
		// the failed New left a's metrics alone
		if n, err := testutil.GatherAndCount(reg, "lbd_cluster_members"); err != nil || n != 1 {
			t.Errorf("lbd_cluster_members: %d series, %v", n, err)
		}
		// and Shutdown frees them for a restarted node
		_ = a.Shutdown()
		o.NodeName = "a"
		a2, err := New(o)
		if err != nil {
			t.Fatalf("restart on the same registry: %v", err)
		}
		_ = a2.Shutdown()
	})
}

func TestViewsPropagate(t *testing.T) {
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]

	all := map[BackendKey]bool{b1: true, b2: true, b3: false}
	for _, n := range nodes {
		n.SetLocal(all)
	}
	took := eventually(t, propagateTimeout, "views merge", allSee(nodes))
	if err := verdictsAre(all, nodes...)(); err != nil {
		t.Fatal(err)
	}
	t.Logf("3 views merged on 3 nodes in %v", took)

	// the status shows each voter's view
	st := a.Status()
	if len(st.Backends) != 3 {
		t.Fatalf("Status.Backends = %+v", st.Backends)
	}
	if bs := st.Backends[0]; bs.Key != b1 || !bs.InRing || bs.Up != 3 || bs.Probers != 3 ||
		!maps.Equal(bs.Views, map[string]bool{"a": true, "b": true, "c": true}) {
		t.Errorf("Status.Backends[0] = %+v", bs)
	}

	// one node goes down on b1 and then a second: the second change is what
	// turns b1 out, so the time until every node has it out is one node's
	// view reaching the others
	a.SetLocal(map[BackendKey]bool{b1: false, b2: true, b3: false})
	eventually(t, propagateTimeout, "a's view spreads", seesView(a, nodes...))
	if err := verdictsAre(all, nodes...)(); err != nil {
		t.Fatalf("one node of three down changed the verdict: %v", err)
	}
	var worst time.Duration
	for range 5 {
		start := time.Now()
		b.SetLocal(map[BackendKey]bool{b1: false, b2: true, b3: false})
		eventually(t, propagateTimeout, "b1 out on every node",
			verdictsAre(map[BackendKey]bool{b1: false, b2: true, b3: false}, nodes...))
		worst = max(worst, time.Since(start))
		b.SetLocal(all)
		eventually(t, propagateTimeout, "b1 back on every node", verdictsAre(all, nodes...))
	}
	t.Logf("a changed view reached every node's verdict within %v (worst of 5)", worst)
	_ = c
}

func TestBlockedNodeOutvoted(t *testing.T) {
	nodes := startCluster(t, 3) // majority
	all := map[BackendKey]bool{b1: true, b2: true}
	for _, n := range nodes {
		n.SetLocal(all)
	}
	eventually(t, propagateTimeout, "views merge", allSee(nodes))

	// c cannot reach b1 (e.g. a firewall rule in its namespace)
	c := nodes[2]
	c.SetLocal(map[BackendKey]bool{b1: false, b2: true})
	eventually(t, propagateTimeout, "c's view spreads", seesView(c, nodes...))
	if err := verdictsAre(all, nodes...)(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		st := n.Status()
		if bs := st.Backends[0]; bs.Key != b1 || !bs.InRing || bs.Up != 2 || bs.Probers != 3 || bs.Views["c"] {
			t.Errorf("%s: Status.Backends[0] = %+v", n.name, bs)
		}
		// no flap: no verdict any node ever computed had b1 out
		n.mu.Lock()
		for _, v := range n.verdicts {
			if up, ok := v[b1]; ok && !up {
				t.Errorf("%s: verdict flapped: %v", n.name, v)
			}
		}
		n.mu.Unlock()
	}
}

func TestNodeGone(t *testing.T) {
	tests := []struct {
		name  string
		leave bool
	}{
		{"shutdown without leave: failure detection", false},
		{"leave", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := startCluster(t, 3)
			a, b, c := nodes[0], nodes[1], nodes[2]
			a.SetLocal(map[BackendKey]bool{b1: true, b4: false})
			b.SetLocal(map[BackendKey]bool{b1: true, b4: true})
			c.SetLocal(map[BackendKey]bool{b1: false}) // c does not probe b4
			eventually(t, propagateTimeout, "views merge", allSee(nodes))
			// b1: 2 of 3 up; b4: 1 of 2 up
			if err := verdictsAre(map[BackendKey]bool{b1: true, b4: false}, nodes...)(); err != nil {
				t.Fatal(err)
			}

			start := time.Now()
			if tt.leave {
				if err := a.Leave(time.Second); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.Shutdown(); err != nil {
				t.Fatal(err)
			}
			// without a: b1 1 of 2 up, b4 1 of 1 up
			eventually(t, detectTimeout, "a drops out of the quorum",
				verdictsAre(map[BackendKey]bool{b1: false, b4: true}, b, c))
			took := time.Since(start)
			if err := allMembers([]*testNode{b, c}, 2); err != nil {
				t.Error(err)
			}
			want := "dead"
			if tt.leave {
				want = "left"
			}
			for _, n := range []*testNode{b, c} {
				// memberlist's leave and a's last state (which tells a leave
				// from a failure) travel separately
				eventually(t, propagateTimeout, "a's state shown", func() error {
					for _, m := range n.Status().Members {
						if m.Name == "a" && (m.State != want || m.Voter) {
							return fmt.Errorf("%s sees a as %+v, want %s and not voting", n.name, m, want)
						}
					}
					return nil
				})
				if err := testutil.GatherAndCompare(n.reg, strings.NewReader(`
# HELP lbd_cluster_members Live LB nodes in the cluster (alive or suspect), this one included.
# TYPE lbd_cluster_members gauge
lbd_cluster_members 2
`), "lbd_cluster_members"); err != nil {
					t.Errorf("%s: %v", n.name, err)
				}
			}
			t.Logf("a gone (leave=%v): the others' verdicts followed in %v", tt.leave, took)
		})
	}
}

func TestRestartedNodeRejoins(t *testing.T) {
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	for _, n := range nodes {
		n.SetLocal(map[BackendKey]bool{b1: true})
	}
	eventually(t, propagateTimeout, "views merge", allSee(nodes))

	port := a.ml.LocalNode().Port
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, detectTimeout, "a declared dead", func() error { return allMembers([]*testNode{b, c}, 2) })

	// a comes back under the same name and address with a new view; its
	// fresh state must replace the one the others kept from its first run
	a2 := startNode(t, "a", withPort(int(port)), joining(b))
	a2.SetLocal(map[BackendKey]bool{b1: false, b2: true})
	nodes = []*testNode{a2, b, c}
	took := eventually(t, formTimeout, "a rejoins", func() error {
		if err := allMembers(nodes, 3); err != nil {
			return err
		}
		return verdictsAre(map[BackendKey]bool{b1: true, b2: true}, nodes...)()
	})
	t.Logf("restarted node rejoined and its new view merged in %v", took)
}

func TestWrongKeyCannotJoin(t *testing.T) {
	nodes := startCluster(t, 3)
	d := startNode(t, "d", withKey(otherKey), joining(nodes...))

	// wait until d has tried (and failed) to join twice, each time through
	// every seed
	eventually(t, formTimeout, "d's join attempts fail", func() error {
		if n := testutil.ToFloat64(d.metrics.joinFailures); n < 2 {
			return fmt.Errorf("%v failed join attempts", n)
		}
		return nil
	})
	if got := liveMembers(d); !slices.Equal(got, []string{"d"}) {
		t.Errorf("d with another key sees %v, want itself alone", got)
	}
	if err := allMembers(nodes, 3); err != nil {
		t.Errorf("d got in: %v", err)
	}
	if err := testutil.GatherAndCompare(d.reg, strings.NewReader(`
# HELP lbd_cluster_members Live LB nodes in the cluster (alive or suspect), this one included.
# TYPE lbd_cluster_members gauge
lbd_cluster_members 1
`), "lbd_cluster_members"); err != nil {
		t.Error(err)
	}
}

func TestJoinRetriedUntilSeedUp(t *testing.T) {
	port := freePort(t)
	b := startNode(t, "b", withJoin(net.JoinHostPort("127.0.0.1", strconv.Itoa(port))))
	eventually(t, formTimeout, "b fails to join", func() error {
		if testutil.ToFloat64(b.metrics.joinFailures) < 1 {
			return errors.New("no failed attempt yet")
		}
		return nil
	})
	// b works alone meanwhile
	b.SetLocal(map[BackendKey]bool{b1: true})
	if got := b.Verdict(); !got[b1] {
		t.Errorf("b alone: verdict %v", got)
	}

	a := startNode(t, "a", withPort(port))
	a.SetLocal(map[BackendKey]bool{b1: true, b2: false})
	took := eventually(t, formTimeout, "b joins a", func() error {
		if err := allMembers([]*testNode{a, b}, 2); err != nil {
			return err
		}
		return verdictsAre(map[BackendKey]bool{b1: true, b2: false}, a, b)()
	})
	t.Logf("b joined the seed %v after it came up", took)
}

// freePort finds a port free for both TCP and UDP on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", l.Addr().String())
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func TestConfigMismatchNotMerged(t *testing.T) {
	nodes := startCluster(t, 2, withQuorum(QuorumAll))
	a, b := nodes[0], nodes[1]
	c := startNode(t, "c", withQuorum(QuorumAll), withDigest("digest-2"), joining(a))
	all := []*testNode{a, b, c}
	eventually(t, formTimeout, "c joins", func() error { return allMembers(all, 3) })

	x := key("other/198.18.0.20")
	a.SetLocal(map[BackendKey]bool{b1: true})
	b.SetLocal(map[BackendKey]bool{b1: true})
	c.SetLocal(map[BackendKey]bool{b1: false, x: true})
	eventually(t, propagateTimeout, "views spread", allSee(all))
	// c's view is not merged on a and b (else b1 would be out under "all"),
	// and c, alone with its config, decides alone
	if err := verdictsAre(map[BackendKey]bool{b1: true}, a, b)(); err != nil {
		t.Error(err)
	}
	if err := verdictsAre(map[BackendKey]bool{b1: false, x: true}, c)(); err != nil {
		t.Error(err)
	}
	for _, m := range a.Status().Members {
		if wantSame := m.Name != "c"; m.SameConfig != wantSame || m.Voter != wantSame {
			t.Errorf("a sees %+v: want SameConfig and Voter %v", m, wantSame)
		}
		if m.Name == "c" && m.ConfigDigest != "digest-2" {
			t.Errorf("a sees c's digest %q", m.ConfigDigest)
		}
	}
	const gauges = `
# HELP lbd_cluster_config_mismatch_members Live LB nodes whose config digest differs from this node's; their views are not merged.
# TYPE lbd_cluster_config_mismatch_members gauge
lbd_cluster_config_mismatch_members %d
# HELP lbd_cluster_members Live LB nodes in the cluster (alive or suspect), this one included.
# TYPE lbd_cluster_members gauge
lbd_cluster_members 3
`
	for n, want := range map[*testNode]int{a: 1, b: 1, c: 2} {
		if err := testutil.GatherAndCompare(n.reg, strings.NewReader(fmt.Sprintf(gauges, want)),
			"lbd_cluster_members", "lbd_cluster_config_mismatch_members"); err != nil {
			t.Errorf("%s: %v", n.name, err)
		}
	}

	// c reloads to the same config: its view is merged everywhere
	start := time.Now()
	if err := c.SetConfigDigest("digest-1", time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, propagateTimeout, "c's view merged",
		verdictsAre(map[BackendKey]bool{b1: false, x: true}, all...))
	took := time.Since(start)
	eventually(t, propagateTimeout, "no mismatch left", func() error {
		for _, n := range all {
			if err := testutil.GatherAndCompare(n.reg, strings.NewReader(fmt.Sprintf(gauges, 0)),
				"lbd_cluster_members", "lbd_cluster_config_mismatch_members"); err != nil {
				return fmt.Errorf("%s: %w", n.name, err)
			}
		}
		return nil
	})
	t.Logf("a config digest change was merged in %v", took)
}

func TestFingerprints(t *testing.T) {
	nodes := startCluster(t, 3)
	divergence := func(want int) func() error {
		return func() error {
			for _, n := range nodes {
				if agree := n.Status().FingerprintsAgree; agree != (want == 0) {
					return fmt.Errorf("%s: FingerprintsAgree = %v", n.name, agree)
				}
				if err := testutil.GatherAndCompare(n.reg, strings.NewReader(fmt.Sprintf(`
# HELP lbd_cluster_fingerprint_divergence 1 when the ring fingerprints of live same-config nodes differ (or are not all known yet), else 0.
# TYPE lbd_cluster_fingerprint_divergence gauge
lbd_cluster_fingerprint_divergence %d
`, want)), "lbd_cluster_fingerprint_divergence"); err != nil {
					return fmt.Errorf("%s: %w", n.name, err)
				}
			}
			return nil
		}
	}
	for _, n := range nodes {
		n.SetFingerprint("ring-1")
	}
	eventually(t, propagateTimeout, "fingerprints agree", divergence(0))

	b := nodes[1]
	before := nodes[0].changes.Load()
	b.SetFingerprint("ring-2")
	eventually(t, propagateTimeout, "divergence seen", divergence(1))
	for _, m := range nodes[0].Status().Members {
		if want := map[string]string{"a": "ring-1", "b": "ring-2", "c": "ring-1"}[m.Name]; m.Fingerprint != want {
			t.Errorf("a sees %s's fingerprint %q, want %q", m.Name, m.Fingerprint, want)
		}
	}
	eventually(t, propagateTimeout, "OnChange on a fingerprint change", func() error {
		if nodes[0].changes.Load() == before {
			return errors.New("not called")
		}
		return nil
	})

	b.SetFingerprint("ring-1")
	eventually(t, propagateTimeout, "fingerprints agree again", divergence(0))

	// view updates: at least each node's own change and both others'
	for _, n := range nodes {
		var got float64
		mfs, err := n.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "lbd_cluster_view_updates_total" {
				got = mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		if got < 3 {
			t.Errorf("%s: lbd_cluster_view_updates_total = %v, want >= 3", n.name, got)
		}
	}
}

func TestLargeViewsSentDirectly(t *testing.T) {
	nodes := startCluster(t, 3)
	// 3,000 backends: about 70 KB of state per node, far beyond one gossip
	// packet
	view := map[BackendKey]bool{}
	for i := range 3000 {
		view[key(fmt.Sprintf("web/198.18.%d.%d", i/250, i%250+1))] = true
	}
	if msg, _ := encodeMessage(msgNodeState, toWire("a", NodeView{Backends: view})); len(msg) <= maxBroadcastSize {
		t.Fatalf("test view is only %d bytes", len(msg))
	}
	for _, n := range nodes {
		n.SetLocal(view)
	}
	took := eventually(t, propagateTimeout, "large views merge", allSee(nodes))
	if err := verdictsAre(view, nodes...)(); err != nil {
		t.Fatal(err)
	}
	t.Logf("3 views of %d backends merged in %v", len(view), took)

	// two nodes lose one backend
	changed := maps.Clone(view)
	changed[key("web/198.18.0.1")] = false
	start := time.Now()
	nodes[0].SetLocal(changed)
	nodes[1].SetLocal(changed)
	eventually(t, propagateTimeout, "change merges", verdictsAre(changed, nodes...))
	t.Logf("a change in a large view reached every node in %v", time.Since(start))
}

func TestMemberlistLogsToSlog(t *testing.T) {
	var buf bytes.Buffer
	l := memberlistLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Printf("[WARN] memberlist: Was able to connect to b but other probes failed")
	l.Printf("[DEBUG] memberlist: Stream connection from=127.0.0.1:1")
	l.Printf("[ERR] memberlist: Failed to send")
	l.Printf("no level")
	got := buf.String()
	for _, want := range []string{
		`level=WARN msg="Was able to connect to b but other probes failed"`,
		`level=DEBUG msg="Stream connection from=127.0.0.1:1"`,
		`level=ERROR msg="Failed to send"`,
		`level=INFO msg="no level"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %s:\n%s", want, got)
		}
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	v := NodeView{ConfigDigest: "d", Version: 1<<63 + 5, Fingerprint: "fp", Backends: map[BackendKey]bool{b1: true, b2: false}}
	msg, err := encodeMessage(msgNodeState, toWire("a", v))
	if err != nil {
		t.Fatal(err)
	}
	typ, states, err := decodeMessage(msg)
	if err != nil || typ != msgNodeState || len(states) != 1 {
		t.Fatalf("decode: %v %v %v", typ, states, err)
	}
	got := states[0].view()
	if states[0].Node != "a" || got.Version != v.Version || got.ConfigDigest != "d" || got.Fingerprint != "fp" ||
		!maps.Equal(got.Backends, v.Backends) {
		t.Errorf("round trip: %+v from %+v", got, v)
	}
	for _, bad := range [][]byte{nil, {9}, {byte(msgNodeState), '{'}, append([]byte{byte(msgNodeState)}, `{"version":1}`...)} {
		if _, _, err := decodeMessage(bad); !errors.Is(err, errBadMessage) {
			t.Errorf("decode %q: %v, want errBadMessage", bad, err)
		}
	}
	if d, ok := decodeMeta(encodeMeta("digest")); !ok || d != "digest" {
		t.Errorf("meta round trip: %q %v", d, ok)
	}
}

// testLogger logs to the test's output at LBD_TEST_LOG level (default warn)
// and drops whatever memberlist's goroutines log after the test ended.
func testLogger(t *testing.T, name string) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	level := slog.LevelWarn
	if s := os.Getenv("LBD_TEST_LOG"); s != "" {
		if err := level.UnmarshalText([]byte(s)); err != nil {
			t.Fatalf("LBD_TEST_LOG: %v", err)
		}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	mu     sync.Mutex
	t      *testing.T
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// JoinAttempted says when a node can know the others: at once without seeds, after a first
// failed attempt when no seed answers, and after the join when one does, by which time the
// members and their states are known. Each flip signals OnChange.
func TestJoinAttempted(t *testing.T) {
	a := startNode(t, "a")
	if !a.Status().JoinAttempted {
		t.Error("a node without seeds has not attempted to join")
	}

	b := startNode(t, "b", withJoin(net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))))
	eventually(t, formTimeout, "b's first attempt ends", func() error {
		if !b.Status().JoinAttempted {
			return errors.New("not yet")
		}
		return nil
	})
	if b.changes.Load() == 0 {
		t.Error("b's failed attempt did not signal OnChange")
	}

	a.SetFingerprint("ring-a")
	c := startNode(t, "c", joining(a))
	eventually(t, formTimeout, "c's join ends", func() error {
		if !c.Status().JoinAttempted {
			return errors.New("not yet")
		}
		return nil
	})
	st := c.Status()
	var seen bool
	for _, m := range st.Members {
		if m.Name == "a" && m.State == "alive" && m.Fingerprint == "ring-a" {
			seen = true
		}
	}
	if !seen {
		t.Errorf("c's join ended without a and its state known: %+v", st.Members)
	}
}

// A node with another config joining changes neither the verdict nor the fingerprints of the
// nodes with this config, but it changes how many live nodes share them: OnChange is called.
func TestOnChangeWhenAMemberWithAnotherConfigJoins(t *testing.T) {
	a := startNode(t, "a")
	a.SetFingerprint("ring-a") // one OnChange; wait for it, so that what follows is c's
	eventually(t, formTimeout, "a's own change is signalled", func() error {
		if a.changes.Load() == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	before := a.changes.Load()
	c := startNode(t, "c", withDigest("digest-2"), joining(a))
	eventually(t, formTimeout, "c joins", func() error { return allMembers([]*testNode{a, c}, 2) })
	eventually(t, formTimeout, "a is told", func() error {
		if a.changes.Load() == before {
			return errors.New("OnChange not called on a")
		}
		return nil
	})
}
