package main

import (
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/pkg/announce"
)

// lbd status shows each session (state, how long up, routes sent, BFD, last error) and each
// VIP address: announced, or held and why.
func TestPrintBGP(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := announce.Status{ASN: 65001, RouterID: "198.18.0.2",
		Peers: []announce.PeerStatus{
			{Address: "198.18.0.1", ASN: 65000, State: "established", Since: now.Add(-90 * time.Second), RoutesSent: 1, BFD: "up"},
			{Address: "2001:db8::1", ASN: 65000, State: "active", LastError: "hold timer expired"},
		},
		Addresses: []announce.AddressStatus{
			{Address: "198.19.0.1", VIPs: []string{"web", "web-tls"}, Announced: true, Since: now.Add(-time.Minute)},
			{Address: "198.19.0.2", VIPs: []string{"flap"}, Since: now.Add(-2 * time.Second), Held: []announce.Reason{
				{Code: announce.ReasonMinHealthy, Detail: "vip flap has 0 of 2 backends in its ring, min_healthy 1"},
				{Code: announce.ReasonRingsDiffer, Detail: "this node's ring fingerprint is shared by 1 of 3 live LB nodes, not a majority"}}},
		},
	}
	var b strings.Builder
	printBGP(&b, st, now)
	want := `
bgp: AS 65001, router id 198.18.0.2
  PEER         ASN    STATE        UP FOR  ROUTES SENT  BFD  LAST ERROR
  198.18.0.1   65000  established  1m30s   1            up   
  2001:db8::1  65000  active       -       0            off  hold timer expired
  ADDRESS     VIPS         ROUTE      FOR   WHY
  198.19.0.1  web,web-tls  announced  1m0s  
  198.19.0.2  flap         held       2s    min_healthy: vip flap has 0 of 2 backends in its ring, min_healthy 1; rings_differ: this node's ring fingerprint is shared by 1 of 3 live LB nodes, not a majority
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
