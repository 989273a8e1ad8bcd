package announce

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// A route is a host route with origin IGP, an unspecified next hop (GoBGP puts the session's
// address there), the MED, and the communities when there are any; IPv6 goes in MP_REACH_NLRI.
func TestPath(t *testing.T) {
	p, err := path(vip4, Attrs{MED: 7, Communities: []uint32{65001<<16 | 100, communityGracefulShutdown}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Family != bgp.RF_IPv4_UC || p.Nlri.String() != "198.19.0.1/32" || p.Withdrawal {
		t.Errorf("ipv4 path: family %v nlri %v withdrawal %v", p.Family, p.Nlri, p.Withdrawal)
	}
	var types []bgp.BGPAttrType
	for _, a := range p.Attrs {
		types = append(types, a.GetType())
		switch a := a.(type) {
		case *bgp.PathAttributeOrigin:
			if a.Value != bgp.BGP_ORIGIN_ATTR_TYPE_IGP {
				t.Errorf("origin %v", a.Value)
			}
		case *bgp.PathAttributeNextHop:
			if !a.Value.IsUnspecified() || !a.Value.Is4() {
				t.Errorf("next hop %v, want 0.0.0.0", a.Value)
			}
		case *bgp.PathAttributeMultiExitDisc:
			if a.Value != 7 {
				t.Errorf("med %d", a.Value)
			}
		case *bgp.PathAttributeCommunities:
			if !slices.Equal(a.Value, []uint32{65001<<16 | 100, 0xffff0000}) {
				t.Errorf("communities %x", a.Value)
			}
		}
	}
	want := []bgp.BGPAttrType{bgp.BGP_ATTR_TYPE_ORIGIN, bgp.BGP_ATTR_TYPE_NEXT_HOP, bgp.BGP_ATTR_TYPE_MULTI_EXIT_DISC, bgp.BGP_ATTR_TYPE_COMMUNITIES}
	if !slices.Equal(types, want) {
		t.Errorf("ipv4 attributes %v, want %v", types, want)
	}

	p, err = path(vip6, Attrs{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Family != bgp.RF_IPv6_UC || p.Nlri.String() != "2001:db8:1::1/128" {
		t.Errorf("ipv6 path: family %v nlri %v", p.Family, p.Nlri)
	}
	types = nil
	for _, a := range p.Attrs {
		types = append(types, a.GetType())
		if mp, ok := a.(*bgp.PathAttributeMpReachNLRI); ok && (!mp.Nexthop.IsUnspecified() || !mp.Nexthop.Is6()) {
			t.Errorf("ipv6 next hop %v, want ::", mp.Nexthop)
		}
	}
	want = []bgp.BGPAttrType{bgp.BGP_ATTR_TYPE_ORIGIN, bgp.BGP_ATTR_TYPE_MP_REACH_NLRI, bgp.BGP_ATTR_TYPE_MULTI_EXIT_DISC}
	if !slices.Equal(types, want) {
		t.Errorf("ipv6 attributes %v, want %v", types, want)
	}
}

// The session timers: the hold time in whole seconds, keepalives at a third of it, BFD only
// when asked for, at lbd's interval and multiplier.
func TestAPIPeer(t *testing.T) {
	sp := &Speaker{holdTime: 9 * time.Second}
	p := sp.apiPeer(Peer{Address: netip.MustParseAddr("198.18.0.1"), ASN: 65000, BFD: true})
	tc := p.GetTimers().GetConfig()
	if p.GetConf().GetNeighborAddress() != "198.18.0.1" || p.GetConf().GetPeerAsn() != 65000 ||
		tc.GetHoldTime() != 9 || tc.GetKeepaliveInterval() != 3 || tc.GetConnectRetry() != 5 || tc.GetIdleHoldTimeAfterReset() != 5 {
		t.Errorf("peer %v", p)
	}
	if b := p.GetBfd(); !b.GetEnabled() || b.GetDesiredMinimumTxInterval() != 200000 || b.GetRequiredMinimumReceive() != 200000 ||
		b.GetDetectionMultiplier() != 4 {
		t.Errorf("bfd %v", b)
	}
	if p := sp.apiPeer(Peer{Address: netip.MustParseAddr("2001:db8::1"), ASN: 65000}); p.GetBfd() != nil {
		t.Errorf("bfd without asking: %v", p.GetBfd())
	}
}
