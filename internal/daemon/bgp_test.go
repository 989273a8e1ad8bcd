package daemon

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lbdproj/lbd/pkg/announce"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/config"
)

// bgpTestConfig: web and web-tls share 198.18.0.10 (min_healthy 2), dns6 is IPv6 with only
// an IPv4 peer.
const bgpTestConfig = `node: {interface: eth0, name: lb1}
bgp:
  asn: 65001
  communities: ["65001:100"]
  med: 7
  peers: [{address: 198.18.0.1, asn: 65000, bfd: true}]
vips:
  - name: web
    address: 198.18.0.10
    port: 80
    ring_size: 1009
    bgp: {min_healthy: 2}
    backends: [{address: 198.18.0.11}, {address: 198.18.0.12}, {address: 198.18.0.13}]
  - name: web-tls
    address: 198.18.0.10
    port: 443
    ring_size: 1009
    bgp: {min_healthy: 2}
    backends: [{address: 198.18.0.11}, {address: 198.18.0.12}]
  - name: dns6
    address: 2001:db8::53
    port: 53
    protocol: udp
    ring_size: 211
    backends: [{address: 2001:db8::11}]
`

func codesOf(rs []announce.Reason) string {
	var cs []string
	for _, r := range rs {
		cs = append(cs, r.Code)
	}
	return strings.Join(cs, ",")
}

// One Wanted per address with its VIPs; min_healthy counts backends in the ring (resolved,
// up, weight > 0) of each VIP on the address; an address of a family no peer speaks is held;
// a VIP that was not written is held.
func TestWanted(t *testing.T) {
	d, _ := newTestDaemon(t, resolverFor("198.18.0.11", "198.18.0.12", "2001:db8::11")) // .13 unresolved
	cfg := mustParse(t, bgpTestConfig)
	views := served(t, d, cfg)

	got := wanted(cfg, views, nil)
	if len(got) != 2 || got[0].Addr != addr("198.18.0.10") || got[1].Addr != addr("2001:db8::53") {
		t.Fatalf("wanted %+v", got)
	}
	if diff := cmp.Diff([]string{"web", "web-tls"}, got[0].VIPs); diff != "" {
		t.Errorf("vips on 198.18.0.10: %s", diff)
	}
	if len(got[0].Reasons) != 0 {
		t.Errorf("198.18.0.10 held by %v; web and web-tls have 2 backends in the ring each", got[0].Reasons)
	}
	if c := codesOf(got[1].Reasons); c != announce.ReasonNoPeer {
		t.Errorf("2001:db8::53 held by %q, want no_peer", c)
	}

	// .12 down: web has 1 in the ring (.13 unresolved), web-tls 1: both short of min_healthy 2
	d.mu.Lock()
	d.down[cluster.BackendKey{VIP: "web", Backend: addr("198.18.0.12")}] = true
	d.down[cluster.BackendKey{VIP: "web-tls", Backend: addr("198.18.0.12")}] = true
	d.mu.Unlock()
	views = served(t, d, cfg)
	got = wanted(cfg, views, nil)
	want := []announce.Reason{
		{Code: announce.ReasonMinHealthy, Detail: "vip web has 1 of 3 backends in its ring, min_healthy 2"},
		{Code: announce.ReasonMinHealthy, Detail: "vip web-tls has 1 of 2 backends in its ring, min_healthy 2"},
	}
	if diff := cmp.Diff(want, got[0].Reasons); diff != "" {
		t.Errorf("198.18.0.10 reasons (-want +got):\n%s", diff)
	}

	// web-tls not written into the data path
	got = wanted(cfg, views[:1], nil)
	if c := codesOf(got[0].Reasons); c != "min_healthy,dataplane" {
		t.Errorf("with web-tls unwritten: %q", c)
	}
}

// The cluster's members decide whether this node agrees: a minority config or minority rings
// withdraw after agreeSettle, a tie keeps what is announced, and before the first join attempt
// ends nothing is announced.
func TestAgreement(t *testing.T) {
	m := func(name, state string, same bool, fp string, self bool) cluster.Member {
		return cluster.Member{Name: name, State: state, SameConfig: same, Voter: same && (state == "alive" || state == "leaving"),
			Fingerprint: fp, Self: self}
	}
	for _, tc := range []struct {
		name    string
		members []cluster.Member
		joining bool
		want    agreement
		code    string
		grace   time.Duration
	}{{
		name:    "all agree",
		members: []cluster.Member{m("lb0", "alive", true, "a", true), m("lb1", "alive", true, "a", false), m("lb2", "alive", true, "a", false)},
		want:    agreement{live: 3, sameConfig: 3, sameRings: 3},
	}, {
		name:    "alone before joining",
		members: []cluster.Member{m("lb0", "alive", true, "a", true)},
		joining: true,
		want:    agreement{joining: true, live: 1, sameConfig: 1, sameRings: 1},
		code:    announce.ReasonJoining,
	}, {
		name: "another hash_seed, in the minority",
		members: []cluster.Member{m("lb0", "alive", false, "x", false), m("lb1", "alive", false, "a", false),
			m("lb2", "alive", false, "a", false), m("lb3", "alive", true, "b", true)},
		want:  agreement{live: 4, sameConfig: 1, sameRings: 1},
		code:  announce.ReasonConfigDiffers,
		grace: agreeSettle,
	}, {
		name: "the majority, one node with another config",
		members: []cluster.Member{m("lb0", "alive", true, "a", true), m("lb1", "alive", true, "a", false),
			m("lb2", "alive", true, "a", false), m("lb3", "alive", false, "b", false)},
		want: agreement{live: 4, sameConfig: 3, sameRings: 3},
	}, {
		name: "rings in the minority",
		members: []cluster.Member{m("lb0", "alive", true, "a", true), m("lb1", "alive", true, "b", false),
			m("lb2", "alive", true, "b", false)},
		want:  agreement{live: 3, sameConfig: 3, sameRings: 1},
		code:  announce.ReasonRingsDiffer,
		grace: agreeSettle,
	}, {
		name:    "a tie of two",
		members: []cluster.Member{m("lb0", "alive", true, "a", true), m("lb1", "alive", false, "b", false)},
		want:    agreement{live: 2, sameConfig: 1, sameRings: 1},
		code:    announce.ReasonConfigDiffers,
		grace:   announce.Forever,
	}, {
		name: "dead and left members do not count",
		members: []cluster.Member{m("lb0", "alive", true, "a", true), m("lb1", "dead", false, "b", false),
			m("lb2", "left", false, "b", false), m("lb3", "leaving", true, "a", false)},
		want: agreement{live: 2, sameConfig: 2, sameRings: 2},
	}} {
		a := agreementOf(cluster.Status{Members: tc.members, JoinAttempted: !tc.joining})
		a.configs, a.rings = "", "" // checked below
		if a != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, a, tc.want)
		}
		rs := a.reasons()
		if codesOf(rs) != tc.code {
			t.Errorf("%s: reasons %v, want %q", tc.name, rs, tc.code)
		}
		if len(rs) == 1 && rs[0].Grace != tc.grace {
			t.Errorf("%s: grace %v, want %v", tc.name, rs[0].Grace, tc.grace)
		}
	}
	a := agreement{live: 4, sameConfig: 1, sameRings: 1}
	if got, want := a.reasons()[0].Detail, "this node's config digest is shared by 1 of 4 live LB nodes, not a majority"; got != want {
		t.Errorf("detail %q, want %q", got, want)
	}

	// the key is what differs: the live members' fingerprints (or digests), by name
	st := cluster.Status{JoinAttempted: true, Members: []cluster.Member{m("lb0", "alive", true, "a", true),
		m("lb1", "alive", true, "b", false), m("lb2", "alive", true, "b", false), m("lb3", "dead", true, "c", false)}}
	r := agreementOf(st).reasons()
	if len(r) != 1 || r[0].Key != "lb0=a;lb1=b;lb2=b;" {
		t.Errorf("rings reason %+v, want key lb0=a;lb1=b;lb2=b;", r)
	}
	st.Members[1].Fingerprint = "x" // lb1 moved on: another difference
	if r2 := agreementOf(st).reasons(); len(r2) != 1 || r2[0].Key == r[0].Key {
		t.Errorf("the key did not change with lb1's rings: %+v", r2)
	}
}

// A reload may change routes' attributes, delays and the peer list, not the sessions.
func TestCheckBGPReload(t *testing.T) {
	old := mustParse(t, bgpTestConfig).BGP
	for _, tc := range []struct {
		name    string
		change  func(*config.BGP)
		refused bool
	}{
		{"nothing", func(*config.BGP) {}, false},
		{"communities and med", func(b *config.BGP) { b.Communities, b.MED = nil, 9 }, false},
		{"delays", func(b *config.BGP) { b.AnnounceDelay, b.ShutdownDrain = time.Second, time.Minute }, false},
		{"peer added", func(b *config.BGP) {
			b.Peers = append(b.Peers, config.BGPPeer{Address: addr("2001:db8::1"), ASN: 65000})
		}, false},
		{"peer removed", func(b *config.BGP) { b.Peers = nil }, false},
		{"asn", func(b *config.BGP) { b.ASN++ }, true},
		{"router_id", func(b *config.BGP) { b.RouterID = addr("198.18.0.9") }, true},
		{"hold_time", func(b *config.BGP) { b.HoldTime = 30 * time.Second }, true},
		{"peer bfd", func(b *config.BGP) { b.Peers[0].BFD = false }, true},
		{"peer asn", func(b *config.BGP) { b.Peers[0].ASN = 65002 }, true},
	} {
		n := *old
		n.Peers = append([]config.BGPPeer(nil), old.Peers...)
		tc.change(&n)
		err := checkBGPReload(old, &n)
		if refused := errors.Is(err, ErrRestartNeeded); refused != tc.refused || (err != nil && !refused) {
			t.Errorf("%s: %v, want refused %v", tc.name, err, tc.refused)
		}
	}
	if err := checkBGPReload(old, nil); !errors.Is(err, ErrRestartNeeded) {
		t.Errorf("bgp section removed: %v", err)
	}
	if err := checkBGPReload(nil, nil); err != nil {
		t.Errorf("no bgp section either time: %v", err)
	}
}

func TestBGPAttrsAndPeers(t *testing.T) {
	b := mustParse(t, bgpTestConfig).BGP
	if got := bgpAttrs(b); got.MED != 7 || len(got.Communities) != 1 || got.Communities[0] != 65001<<16|100 {
		t.Errorf("attrs %+v", got)
	}
	want := []announce.Peer{{Address: netip.MustParseAddr("198.18.0.1"), ASN: 65000, BFD: true}}
	if diff := cmp.Diff(want, bgpPeers(b), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("peers: %s", diff)
	}
}
