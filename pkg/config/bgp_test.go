package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// bgpBase is base (lines 1–9) with a bgp section from line 10:
//
//	10 bgp:
//	11   asn: 65001
//	12   peers:
//	13     - address: 198.18.0.1
//	14       asn: 65000
const bgpBase = base + `bgp:
  asn: 65001
  peers:
    - address: 198.18.0.1
      asn: 65000
`

func TestBGPSection(t *testing.T) {
	const in = `node: {interface: eth0}
bgp:
  asn: 4200000001
  router_id: 198.18.0.2
  hold_time: 3s
  announce_delay: 0s
  shutdown_drain: 1500ms
  communities: ["65001:100", "0:666"]
  med: 50
  peers:
    - {address: 198.18.0.1, asn: 65000, bfd: true}
    - {address: "2001:db8::1", asn: 65000}
vips:
  - name: web
    address: 198.18.0.10
    port: 80
    backends: [{address: 198.18.0.11}, {address: 198.18.0.12}]
    bgp: {min_healthy: 2}
  - name: web-tls
    address: 198.18.0.10
    port: 443
    backends: [{address: 198.18.0.11}, {address: 198.18.0.12}]
    bgp: {min_healthy: 2}
`
	c, err := Parse("t.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	pos := func(l, col int) Position { return Position{"t.yaml", l, col} }
	want := &BGP{
		ASN: 4200000001, RouterID: netip.MustParseAddr("198.18.0.2"), HoldTime: 3 * time.Second,
		AnnounceDelay: 0, ShutdownDrain: 1500 * time.Millisecond,
		Communities: []Community{65001<<16 | 100, 666}, MED: 50,
		Peers: []BGPPeer{
			{Address: netip.MustParseAddr("198.18.0.1"), ASN: 65000, BFD: true, Pos: pos(11, 7)},
			{Address: netip.MustParseAddr("2001:db8::1"), ASN: 65000, Pos: pos(12, 7)},
		},
		Pos: pos(2, 1),
	}
	if diff := cmp.Diff(want, c.BGP, cmpNetip...); diff != "" {
		t.Errorf("bgp (-want +got):\n%s", diff)
	}
	if got := c.VIPs[1].BGP; got != (VIPBGP{MinHealthy: 2, Pos: pos(23, 10)}) {
		t.Errorf("vips[1].bgp = %+v", got)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %q", c.Warnings)
	}
	if s := want.Communities[0].String(); s != "65001:100" {
		t.Errorf("community prints as %q", s)
	}
}

func TestBGPDefaults(t *testing.T) {
	c, err := Parse("t.yaml", []byte(bgpBase))
	if err != nil {
		t.Fatal(err)
	}
	b := c.BGP
	if b.ASN != 65001 || b.RouterID.IsValid() || b.HoldTime != 9*time.Second || b.AnnounceDelay != 5*time.Second ||
		b.ShutdownDrain != 5*time.Second || b.Communities != nil || b.MED != 0 || len(b.Peers) != 1 || b.Peers[0].BFD {
		t.Errorf("bgp defaults: %+v", b)
	}
	if c.VIPs[0].BGP.MinHealthy != 1 {
		t.Errorf("min_healthy default %d, want 1", c.VIPs[0].BGP.MinHealthy)
	}
	// without a bgp section: no BGP, and the VIPs still carry the default
	c, err = Parse("t.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.BGP != nil || c.VIPs[0].BGP.MinHealthy != 1 {
		t.Errorf("no bgp section: bgp %+v, min_healthy %d", c.BGP, c.VIPs[0].BGP.MinHealthy)
	}
}

func TestBGPErrors(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, wantErr string
	}{{
		name:    "asn missing",
		old:     "  asn: 65001\n",
		new:     "",
		wantErr: "t.yaml:10:1: bgp.asn: required field is missing",
	}, {
		name:    "asn zero",
		old:     "asn: 65001",
		new:     "asn: 0",
		wantErr: "t.yaml:11:8: bgp.asn: 0 is out of range (1..4294967294)",
	}, {
		name:    "asn trans",
		old:     "asn: 65001",
		new:     "asn: 23456",
		wantErr: "t.yaml:11:8: bgp.asn: 23456 is AS_TRANS, not an AS number (RFC 6793)",
	}, {
		name:    "router id v6",
		old:     "  asn: 65001\n",
		new:     "  asn: 65001\n  router_id: 2001:db8::2\n",
		wantErr: "t.yaml:12:14: bgp.router_id: 2001:db8::2 is not an IPv4 address: a BGP identifier is 32 bits",
	}, {
		name:    "hold time short",
		old:     "  asn: 65001\n",
		new:     "  asn: 65001\n  hold_time: 1s\n",
		wantErr: "t.yaml:12:14: bgp.hold_time: 1s is too short (minimum 3s)",
	}, {
		name:    "hold time fraction",
		old:     "  asn: 65001\n",
		new:     "  asn: 65001\n  hold_time: 4500ms\n",
		wantErr: "t.yaml:12:14: bgp.hold_time: 4500ms is not a whole number of seconds (BGP counts in seconds)",
	}, {
		name: "bad community",
		old:  "  asn: 65001\n",
		new:  "  asn: 65001\n  communities: [65001, \"1:70000\"]\n",
		wantErr: "t.yaml:12:17: bgp.communities[0]: \"65001\" is not a community: ASN:VALUE, each 0..65535 (e.g. 65001:100)\n" +
			"t.yaml:12:24: bgp.communities[1]: \"1:70000\" is not a community: ASN:VALUE, each 0..65535 (e.g. 65001:100)",
	}, {
		name:    "graceful shutdown community",
		old:     "  asn: 65001\n",
		new:     "  asn: 65001\n  communities: [\"65535:0\"]\n",
		wantErr: "t.yaml:12:17: bgp.communities[0]: 65535:0 is GRACEFUL_SHUTDOWN (RFC 8326): lbd adds it itself while it drains",
	}, {
		name:    "no peers",
		old:     "  peers:\n    - address: 198.18.0.1\n      asn: 65000\n",
		new:     "  peers: []\n",
		wantErr: "t.yaml:12:3: bgp.peers: is empty: name at least one router to announce to",
	}, {
		name:    "peer twice",
		old:     "      asn: 65000\n",
		new:     "      asn: 65000\n    - {address: 198.18.0.1, asn: 65002}\n",
		wantErr: "t.yaml:15:17: bgp.peers[1].address: 198.18.0.1 is already a peer (t.yaml:13:7)",
	}, {
		name:    "peer asn missing",
		old:     "      asn: 65000\n",
		new:     "      bfd: yes\n",
		wantErr: "t.yaml:13:7: bgp.peers[0].asn: required field is missing\nt.yaml:14:12: bgp.peers[0].bfd: \"yes\" is not a boolean (true or false)",
	}, {
		name:    "unknown field",
		old:     "  asn: 65001\n",
		new:     "  asn: 65001\n  hold: 9s\n",
		wantErr: `t.yaml:12:3: bgp.hold: unknown field; allowed: asn, router_id, hold_time, announce_delay, shutdown_drain, communities, med, peers`,
	}, {
		name:    "min_healthy above the backends",
		old:     "      - address: 198.18.0.12\n",
		new:     "      - address: 198.18.0.12\n    bgp: {min_healthy: 3}\n",
		wantErr: "t.yaml:10:24: vips[0].bgp.min_healthy: 3 is more than the VIP's 2 backends: it would never be announced",
	}, {
		name: "one address, two min_healthy",
		old:  "      - address: 198.18.0.12\n",
		new: "      - address: 198.18.0.12\n    bgp: {min_healthy: 2}\n" +
			"  - name: dns\n    address: 198.18.0.10\n    port: 53\n    protocol: udp\n    backends: [{address: 198.18.0.11}]\n",
		wantErr: "t.yaml:11:5: vips[1].bgp.min_healthy: 1 differs from vips[0] (web, min_healthy 2) on the same address 198.18.0.10: VIPs on one address share one route and need the same bgp settings",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(bgpBase, tc.old, tc.new, 1)
			if in == bgpBase {
				t.Fatalf("%q not in the base config", tc.old)
			}
			_, err := Parse("t.yaml", []byte(in))
			if err == nil {
				t.Fatalf("no error; want\n%s", tc.wantErr)
			}
			if err.Error() != tc.wantErr {
				t.Errorf("error:\n got %s\nwant %s", err, tc.wantErr)
			}
		})
	}
}

func TestBGPWarnings(t *testing.T) {
	// an IPv6 VIP with only an IPv4 session is never announced
	in := strings.Replace(bgpBase, "address: 198.18.0.10", "address: 2001:db8::10", 1)
	in = strings.ReplaceAll(in, "      - address: 198.18.0.1", "      - address: 2001:db8::1")
	c, err := Parse("t.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"t.yaml:4:5: vips[0].address: 2001:db8::10 is IPv6 but no bgp peer is: it is not announced (an IPv6 route needs an IPv6 session)"}
	if !cmp.Equal(c.Warnings, want) {
		t.Errorf("warnings %q\nwant %q", c.Warnings, want)
	}
	// per-VIP settings without a bgp section
	c, err = Parse("t.yaml", []byte(base+"    bgp: {min_healthy: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"t.yaml:10:10: vips[0].bgp: there is no bgp section: nothing is announced"}
	if !cmp.Equal(c.Warnings, want) {
		t.Errorf("warnings %q\nwant %q", c.Warnings, want)
	}
}
