package daemon

import (
	"context"
	"strings"
	"testing"

	"github.com/lbdproj/lbd/pkg/backends"
	"github.com/lbdproj/lbd/pkg/cluster"
)

// The desired backends: a backend is active, draining (weight 0) or down (the verdict, or a
// next hop that does not resolve), and only active ones own ring slots, in proportion to
// their weights.
func TestBuildDesiredBackends(t *testing.T) {
	r := resolverFor("198.18.0.11", "198.18.0.12") // .13 does not resolve
	d, _ := newTestDaemon(t, r)
	cfg := mustParse(t, testConfig)

	views := served(t, d, cfg)
	if len(views) != 2 {
		t.Fatalf("%d views", len(views))
	}
	web, dns := views[0], views[1]
	state := func(v vipView) []string {
		var out []string
		for _, b := range v.backends {
			out = append(out, b.Addr.String()+"="+backends.StateOf(b).String())
		}
		return out
	}
	if got, want := strings.Join(state(web), " "), "198.18.0.11=active 198.18.0.12=draining 198.18.0.13=down"; got != want {
		t.Errorf("web: %s, want %s", got, want)
	}
	if got := web.unreachable[addr("198.18.0.13")]; got != errNoNeighbour.Error() {
		t.Errorf("web: unreachable .13 = %q", got)
	}
	if len(web.ring) != 1009 {
		t.Fatalf("web ring has %d slots", len(web.ring))
	}
	shares := backends.Shares(web.backends, web.ring)
	if shares[addr("198.18.0.11")] != 1009 || len(shares) != 1 {
		t.Errorf("web shares %v: all slots should be .11's, the only active backend", shares)
	}
	if web.nexthops[0].DstMAC.String() != "02:00:00:00:00:0b" || web.nexthops[2].DstMAC != nil {
		t.Errorf("web next hops %v", web.nexthops)
	}
	if dns.key.Proto != 17 || dns.key.Port != 53 || len(dns.ring) != 211 {
		t.Errorf("dns: key %v, %d slots", dns.key, len(dns.ring))
	}
	// .11 is behind both VIPs and resolved once for the build
	if n := r.callsFor(addr("198.18.0.11")); n != 1 {
		t.Errorf(".11 resolved %d times in one build, want 1", n)
	}

	// the verdict takes .11 out of web only; .13 resolves now and takes every slot
	d.down = map[cluster.BackendKey]bool{{VIP: "web", Backend: addr("198.18.0.11")}: true}
	r.set(addr("198.18.0.13"), hop("198.18.0.13"))
	views = served(t, d, cfg)
	if n, m := r.callsFor(addr("198.18.0.11")), r.callsFor(addr("198.18.0.13")); n != 1 || m != 2 {
		t.Errorf("resolved .11 %d times, .13 %d times: want .11 kept from the first build, .13 retried", n, m)
	}
	web, dns = views[0], views[1]
	if got, want := strings.Join(state(web), " "), "198.18.0.11=down 198.18.0.12=draining 198.18.0.13=active"; got != want {
		t.Errorf("web with .11 down: %s, want %s", got, want)
	}
	if got := strings.Join(state(dns), " "); got != "198.18.0.11=active" {
		t.Errorf("dns: %s: the verdict on web's .11 must not touch dns's", got)
	}
	if shares := backends.Shares(web.backends, web.ring); shares[addr("198.18.0.13")] != 1009 {
		t.Errorf("web shares %v", shares)
	}
	if len(web.unreachable) != 0 {
		t.Errorf("web unreachable %v after .13 resolved", web.unreachable)
	}
}

// With every backend down the VIP keeps an empty ring (the data path drops and counts its
// packets) instead of failing the build.
func TestBuildAllDown(t *testing.T) {
	d, _ := newTestDaemon(t, resolverFor())
	views := served(t, d, mustParse(t, testConfig))
	for _, v := range views {
		if v.ring != nil {
			t.Errorf("%s: ring of %d slots with no backend resolved", v.cfg.Name, len(v.ring))
		}
		if len(v.unreachable) != len(v.backends) {
			t.Errorf("%s: unreachable %v", v.cfg.Name, v.unreachable)
		}
	}
}

func TestBuildRefusesIPv6ThroughTunnel(t *testing.T) {
	d, _ := newTestDaemon(t, resolverFor("2001:db8::11"))
	cfg := mustParse(t, `node: {interface: eth0, name: lb1}
vips:
  - name: v6
    address: 2001:db8::10
    port: 80
    health: {through_tunnel: true}
    backends: [{address: "2001:db8::11"}]
`)
	_, err := d.build(context.Background(), cfg)
	if err == nil || !strings.HasPrefix(err.Error(), "t.yaml:3:5: vip v6: health.through_tunnel:") {
		t.Errorf("err = %v", err)
	}
}

// A ring's fingerprint follows the slot → backend mapping and nothing else, and the
// digest of several fingerprints does not depend on map order.
func TestFingerprints(t *testing.T) {
	bs := []backends.Backend{{Addr: addr("198.18.0.11")}, {Addr: addr("198.18.0.12")}}
	a := fingerprint(bs, []uint32{0, 1, 0})
	if len(a) != 16 || a != fingerprint(bs, []uint32{0, 1, 0}) {
		t.Fatalf("fingerprint %q is not stable", a)
	}
	if a == fingerprint(bs, []uint32{1, 0, 0}) {
		t.Error("a ring with two slots swapped has the same fingerprint")
	}
	// the same addresses in another order of the backend list: the same ring
	if b := fingerprint([]backends.Backend{bs[1], bs[0]}, []uint32{1, 0, 1}); b != a {
		t.Errorf("same ring through another index: %s, want %s", b, a)
	}
	x := digestOf(map[string]string{"web": "aa", "dns": "bb"})
	if y := digestOf(map[string]string{"dns": "bb", "web": "aa"}); x != y {
		t.Errorf("digest depends on order: %s %s", x, y)
	}
	if digestOf(map[string]string{"web": "aa", "dns": "bc"}) == x {
		t.Error("a changed fingerprint left the digest alone")
	}
}
