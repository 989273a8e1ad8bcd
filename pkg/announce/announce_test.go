package announce

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/wait"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeRoutes records what the Announcer asks of a speaker.
type fakeRoutes struct {
	mu    sync.Mutex
	calls []string
	peers []Peer
}

func (f *fakeRoutes) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeRoutes) Announce(a netip.Addr, at Attrs) error {
	var cs []string
	for _, c := range at.Communities {
		cs = append(cs, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
	}
	f.record(fmt.Sprintf("announce %s med %d communities [%s]", a, at.MED, strings.Join(cs, " ")))
	return nil
}

func (f *fakeRoutes) Withdraw(a netip.Addr) error {
	f.record("withdraw " + a.String())
	return nil
}

func (f *fakeRoutes) SetPeers(p []Peer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = p
	return nil
}

func (f *fakeRoutes) Peers() []PeerStatus {
	return []PeerStatus{{Address: "198.18.0.1", ASN: 65000, State: "established", RoutesSent: 1}}
}

func (f *fakeRoutes) Stop() { f.record("stop") }

func (f *fakeRoutes) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// waitCalls waits until the speaker has been asked exactly want, in order.
func (f *fakeRoutes) waitCalls(t *testing.T, want ...string) {
	t.Helper()
	err := wait.Until(5*time.Second, 5*time.Millisecond, func() (bool, error) {
		return slices.Equal(f.Calls(), want), nil
	})
	if err != nil {
		t.Fatalf("speaker calls %q\nwant %q", f.Calls(), want)
	}
}

// syncBuffer is a log buffer written by the Announcer's goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestAnnouncer(t *testing.T) (*Announcer, *fakeRoutes, *prometheus.Registry, *syncBuffer) {
	t.Helper()
	f := &fakeRoutes{}
	reg := prometheus.NewPedanticRegistry()
	logs := &syncBuffer{}
	a, err := newAnnouncer(f, 65001, netip.MustParseAddr("198.18.0.2"),
		slog.New(slog.NewTextHandler(logs, nil)), reg, newMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown(0) })
	return a, f, reg, logs
}

var (
	web   = Wanted{Addr: vip4, VIPs: []string{"web"}}
	web6  = Wanted{Addr: vip6, VIPs: []string{"web6"}}
	short = Reason{Code: ReasonMinHealthy, Detail: "vip web: 0 of 3 backends in the ring, min_healthy 1"}
)

// What is announceable is announced once its delay has passed, a held address is withdrawn at
// once, a change of attributes re-announces without a withdraw, an address no longer served
// is withdrawn.
func TestAnnouncerRoutes(t *testing.T) {
	a, f, _, logs := newTestAnnouncer(t)
	attrs := Attrs{Communities: []uint32{65001<<16 | 100}}

	a.Update(50*time.Millisecond, attrs, []Wanted{web, web6})
	f.waitCalls(t, "announce 198.19.0.1 med 0 communities [65001:100]", "announce 2001:db8:1::1 med 0 communities [65001:100]")

	held := web
	held.Reasons = []Reason{short}
	a.Update(50*time.Millisecond, attrs, []Wanted{held, web6})
	f.waitCalls(t, "announce 198.19.0.1 med 0 communities [65001:100]", "announce 2001:db8:1::1 med 0 communities [65001:100]",
		"withdraw 198.19.0.1")
	if !strings.Contains(logs.String(), `msg="bgp withdraw" address=198.19.0.1 reason="min_healthy: vip web: 0 of 3 backends in the ring, min_healthy 1"`) {
		t.Errorf("the withdraw is not logged with its reason:\n%s", logs)
	}

	// a reload changes the attributes: re-announced, never withdrawn
	attrs2 := Attrs{MED: 10}
	a.Update(50*time.Millisecond, attrs2, []Wanted{held, web6})
	f.waitCalls(t, "announce 198.19.0.1 med 0 communities [65001:100]", "announce 2001:db8:1::1 med 0 communities [65001:100]",
		"withdraw 198.19.0.1", "announce 2001:db8:1::1 med 10 communities []")

	// web6 no longer served
	a.Update(50*time.Millisecond, attrs2, []Wanted{held})
	f.waitCalls(t, "announce 198.19.0.1 med 0 communities [65001:100]", "announce 2001:db8:1::1 med 0 communities [65001:100]",
		"withdraw 198.19.0.1", "announce 2001:db8:1::1 med 10 communities []", "withdraw 2001:db8:1::1")

	st := a.Status()
	if len(st.Addresses) != 1 || st.Addresses[0].Announced || len(st.Addresses[0].Held) != 1 || st.Addresses[0].Held[0] != short {
		t.Errorf("status %+v", st)
	}
}

// Shutdown re-announces with 65535:0, waits the drain, withdraws, then closes the sessions,
// and logs each step in that order; updates during the drain change nothing.
func TestAnnouncerShutdown(t *testing.T) {
	a, f, _, logs := newTestAnnouncer(t)
	attrs := Attrs{Communities: []uint32{65001<<16 | 100}, MED: 5}
	a.Update(0, attrs, []Wanted{web})
	f.waitCalls(t, "announce 198.19.0.1 med 5 communities [65001:100]")

	const drain = 200 * time.Millisecond
	start := time.Now()
	done := make(chan struct{})
	go func() {
		a.Shutdown(drain)
		close(done)
	}()
	f.waitCalls(t, "announce 198.19.0.1 med 5 communities [65001:100]", "announce 198.19.0.1 med 5 communities [65001:100 65535:0]")
	a.Update(0, attrs, nil) // ignored: the drain decides
	<-done
	if took := time.Since(start); took < drain {
		t.Errorf("shutdown took %v, less than the drain %v", took, drain)
	}
	want := []string{"announce 198.19.0.1 med 5 communities [65001:100]", "announce 198.19.0.1 med 5 communities [65001:100 65535:0]",
		"withdraw 198.19.0.1", "stop"}
	if got := f.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls %q\nwant %q", got, want)
	}
	out := logs.String()
	i, j, k := strings.Index(out, "bgp drain: routes re-announced"), strings.Index(out, "bgp drain: routes withdrawn"), strings.Index(out, "bgp sessions closed")
	if i < 0 || j < i || k < j {
		t.Errorf("log does not show drain, withdraw, close in order:\n%s", out)
	}
	a.Shutdown(drain) // twice is fine
}

func TestAnnouncerMetrics(t *testing.T) {
	a, f, reg, _ := newTestAnnouncer(t)
	held := web6
	held.Reasons = []Reason{short, {Code: ReasonRingsDiffer, Detail: "x"}}
	a.Update(0, Attrs{}, []Wanted{web, held})
	f.waitCalls(t, "announce 198.19.0.1 med 0 communities []")
	want := `
# HELP lbd_bgp_announced 1 while the host route to the VIP address is announced.
# TYPE lbd_bgp_announced gauge
lbd_bgp_announced{address="198.19.0.1"} 1
lbd_bgp_announced{address="2001:db8:1::1"} 0
# HELP lbd_bgp_held 1 for each reason a VIP address is not announced: dataplane, min_healthy, config_differs, rings_differ, cluster_joining, no_peer, announce_delay, shutdown.
# TYPE lbd_bgp_held gauge
lbd_bgp_held{address="2001:db8:1::1",reason="min_healthy"} 1
lbd_bgp_held{address="2001:db8:1::1",reason="rings_differ"} 1
# HELP lbd_bgp_peer_up 1 while the BGP session to the peer is established.
# TYPE lbd_bgp_peer_up gauge
lbd_bgp_peer_up{peer="198.18.0.1"} 1
# HELP lbd_bgp_route_transitions_total Host routes to VIP addresses announced or withdrawn, by address.
# TYPE lbd_bgp_route_transitions_total counter
lbd_bgp_route_transitions_total{address="198.19.0.1",to="announced"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
