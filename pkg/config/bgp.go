package config

// The bgp section: the routes this node announces for its VIP addresses, and the per-VIP
// bgp settings.

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// BGP defaults, also documented in configs/example.yaml.
const (
	DefaultBGPHoldTime        = 9 * time.Second
	DefaultAnnounceDelay      = 5 * time.Second
	DefaultShutdownDrain      = 5 * time.Second
	DefaultMinHealthy         = 1
	minHoldTime               = 3 * time.Second // RFC 4271 4.2: 0 or at least 3 seconds
	maxHoldTime               = 65535 * time.Second
	CommunityGracefulShutdown = Community(0xffff0000) // 65535:0, RFC 8326: lbd adds it when it drains
)

// BGP configures the routes this LB node announces to its routers (see pkg/announce).
type BGP struct {
	ASN           uint32
	RouterID      netip.Addr    // zero: the interface's first IPv4 address
	HoldTime      time.Duration // whole seconds, at least 3 s
	AnnounceDelay time.Duration // an address must be announceable this long before it is announced
	ShutdownDrain time.Duration // on SIGTERM: announce with 65535:0, wait this long, withdraw
	Communities   []Community   // added to every route
	MED           uint32
	Peers         []BGPPeer
	Pos           Position // where the section starts
}

// BGPPeer is one router lbd connects to.
type BGPPeer struct {
	Address netip.Addr
	ASN     uint32
	BFD     bool
	Pos     Position
}

// VIPBGP is a VIP's own bgp settings. VIPs on one address share one route, so they must
// have the same ones.
type VIPBGP struct {
	MinHealthy int      // the address is held while the VIP has fewer backends in its ring
	Pos        Position // of the VIP's bgp mapping; zero when it has none
}

// Community is a standard BGP community, written ASN:VALUE (RFC 1997).
type Community uint32

func (c Community) String() string { return fmt.Sprintf("%d:%d", uint32(c)>>16, uint32(c)&0xffff) }

// parseCommunity reads "A:B", each half 0..65535.
func parseCommunity(s string) (Community, bool) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, false
	}
	hi, err1 := strconv.ParseUint(a, 10, 16)
	lo, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return Community(hi<<16 | lo), true
}

// asn reads an AS number: 1..4294967294, not AS_TRANS (23456, RFC 6793).
func (f *fields) asn(name string, dst *uint32) bool {
	n, ok := f.get(name)
	if !ok {
		return false
	}
	v, ok := f.uint(name, 1, math.MaxUint32-1)
	if !ok {
		return false
	}
	if v == 23456 {
		f.d.errorf(n, join(f.path, name), "23456 is AS_TRANS, not an AS number (RFC 6793)")
		return false
	}
	*dst = uint32(v)
	return true
}

func (d *decoder) bgp(f *fields) *BGP {
	b := &BGP{HoldTime: DefaultBGPHoldTime, AnnounceDelay: DefaultAnnounceDelay, ShutdownDrain: DefaultShutdownDrain}
	if f == nil {
		return b
	}
	b.Pos = d.pos(f.node)
	if !f.asn("asn", &b.ASN) && !f.has("asn") {
		f.missing("asn")
	}
	if a, n, ok := f.addr("router_id"); ok {
		if !a.Is4() {
			d.errorf(n, "bgp.router_id", "%s is not an IPv4 address: a BGP identifier is 32 bits", a)
		}
		b.RouterID = a
	}
	if f.duration("hold_time", minHoldTime, &b.HoldTime) {
		n, _ := f.get("hold_time")
		switch {
		case b.HoldTime%time.Second != 0:
			d.errorf(n, "bgp.hold_time", "%s is not a whole number of seconds (BGP counts in seconds)", n.Value)
		case b.HoldTime > maxHoldTime:
			d.errorf(n, "bgp.hold_time", "%s is longer than BGP's limit of 65535s", n.Value)
		}
	}
	f.duration("announce_delay", 0, &b.AnnounceDelay)
	f.duration("shutdown_drain", 0, &b.ShutdownDrain)
	if items, ok := f.list("communities"); ok {
		for i, it := range items {
			it = resolve(it)
			path := index("bgp.communities", i)
			if it.Kind != yaml.ScalarNode {
				d.errorf(it, path, "expected ASN:VALUE, got %s", kindName(it))
				continue
			}
			c, ok := parseCommunity(it.Value)
			switch {
			case !ok:
				d.errorf(it, path, "%q is not a community: ASN:VALUE, each 0..65535 (e.g. 65001:100)", it.Value)
			case c == CommunityGracefulShutdown:
				d.errorf(it, path, "65535:0 is GRACEFUL_SHUTDOWN (RFC 8326): lbd adds it itself while it drains")
			case slices.Contains(b.Communities, c):
				d.errorf(it, path, "%s is listed twice", c)
			default:
				b.Communities = append(b.Communities, c)
			}
		}
	}
	if v, ok := f.uint("med", 0, math.MaxUint32); ok {
		b.MED = uint32(v)
	}
	b.Peers = d.bgpPeers(f)
	return b
}

func (d *decoder) bgpPeers(f *fields) []BGPPeer {
	items, ok := f.list("peers")
	if !ok {
		if !f.has("peers") {
			f.missing("peers")
		}
		return nil
	}
	if len(items) == 0 {
		d.errorf(f.m["peers"].key, "bgp.peers", "is empty: name at least one router to announce to")
		return nil
	}
	var peers []BGPPeer
	seen := map[netip.Addr]Position{}
	for i, it := range items {
		path := index("bgp.peers", i)
		it = resolve(it)
		p := BGPPeer{Pos: d.pos(it)}
		pf := d.mapping(it, path, "address", "asn", "bfd")
		if pf == nil {
			continue
		}
		if a, n, ok := pf.addr("address"); ok {
			if prev, dup := seen[a]; dup {
				d.errorf(n, path+".address", "%s is already a peer (%s)", a, prev)
			}
			seen[a] = p.Pos
			p.Address = a
		} else if !pf.has("address") {
			pf.missing("address")
		}
		if !pf.asn("asn", &p.ASN) && !pf.has("asn") {
			pf.missing("asn")
		}
		pf.bool("bfd", &p.BFD)
		peers = append(peers, p)
	}
	return peers
}

// vipBGP reads a VIP's bgp mapping; nbackends bounds min_healthy.
func (d *decoder) vipBGP(f *fields, vipPath string, nbackends int) VIPBGP {
	vb := VIPBGP{MinHealthy: DefaultMinHealthy}
	bf := f.sub("bgp", "min_healthy")
	if bf == nil {
		return vb
	}
	vb.Pos = d.pos(resolve(f.m["bgp"].val))
	if n, ok := bf.get("min_healthy"); ok && bf.int("min_healthy", 0, 16383, &vb.MinHealthy) && nbackends > 0 && vb.MinHealthy > nbackends {
		d.errorf(n, vipPath+".bgp.min_healthy", "%d is more than the VIP's %d backends: it would never be announced", vb.MinHealthy, nbackends)
	}
	return vb
}

// checkBGP checks what spans sections: VIPs on one address share one route and so their bgp
// settings; an address whose family no peer speaks is never announced (a warning); per-VIP
// settings without a bgp section do nothing (a warning).
func (d *decoder) checkBGP(c *Config) {
	type first struct {
		i int
		v VIP
	}
	byAddr := map[netip.Addr]first{}
	for i, v := range c.VIPs {
		if !v.Address.IsValid() {
			continue
		}
		prev, ok := byAddr[v.Address]
		if !ok {
			byAddr[v.Address] = first{i, v}
			continue
		}
		if prev.v.BGP.MinHealthy != v.BGP.MinHealthy {
			at := v.Pos
			if v.BGP.Pos.Line != 0 {
				at = v.BGP.Pos
			}
			d.errs = append(d.errs, &Error{Pos: at, Path: index("vips", i) + ".bgp.min_healthy",
				Msg: fmt.Sprintf("%d differs from vips[%d] (%s, min_healthy %d) on the same address %s: VIPs on one address share one route and need the same bgp settings",
					v.BGP.MinHealthy, prev.i, prev.v.Name, prev.v.BGP.MinHealthy, v.Address)})
		}
	}
	if c.BGP == nil {
		for i, v := range c.VIPs {
			if v.BGP.Pos.Line != 0 {
				d.warns = append(d.warns, &Error{Pos: v.BGP.Pos, Path: index("vips", i) + ".bgp",
					Msg: "there is no bgp section: nothing is announced"})
			}
		}
		return
	}
	has4 := slices.ContainsFunc(c.BGP.Peers, func(p BGPPeer) bool { return p.Address.Is4() })
	has6 := slices.ContainsFunc(c.BGP.Peers, func(p BGPPeer) bool { return p.Address.Is6() })
	if len(c.BGP.Peers) == 0 {
		return
	}
	for i, v := range c.VIPs {
		if f, ok := byAddr[v.Address]; !ok || f.i != i {
			continue // warn once per address
		}
		if v.Address.Is4() && !has4 || v.Address.Is6() && !has6 {
			fam := map[bool]string{true: "IPv4", false: "IPv6"}[v.Address.Is4()]
			d.warns = append(d.warns, &Error{Pos: v.Pos, Path: index("vips", i) + ".address",
				Msg: fmt.Sprintf("%s is %s but no bgp peer is: it is not announced (an %s route needs an %s session)", v.Address, fam, fam, fam)})
		}
	}
}
