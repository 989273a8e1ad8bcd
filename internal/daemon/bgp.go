package daemon

// BGP: what the daemon tells pkg/announce to announce, and why it holds an address back.

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/lbdproj/lbd/pkg/announce"
	"github.com/lbdproj/lbd/pkg/backends"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/config"
)

// agreeSettle is how long this node's config digest or rings may differ from the majority's,
// the same way, before an announced address is withdrawn (one that is not announced is held
// at once); while the digests or fingerprints keep changing (a backend flapping, a config
// rolled out), the nodes are converging and the clock starts again. A
// backend's verdict reaches every node, and the nodes' new ring fingerprints reach each other,
// by gossip within about a second; a config pushed to every node at once is reloaded within a
// few hundred milliseconds of each other (lbd run --watch, default 2 s, or SIGHUP). Waiting
// that long spares the router a withdraw and re-announce of every node on each such change; a
// difference that lasts longer is real.
const agreeSettle = 3 * time.Second

// newAnnouncer starts BGP for cfg's bgp section; nil without one. Called once the data path
// is attached and the VIPs written, so that nothing is announced before the node can serve
// it (attaching XDP may also reset the NIC, which would drop a session started before).
func newAnnouncer(cfg *config.Config, d *Daemon) (*announce.Announcer, error) {
	b := cfg.BGP
	if b == nil {
		return nil, nil
	}
	rid := b.RouterID
	if !rid.IsValid() {
		var err error
		if rid, err = firstIPv4(cfg.Node.Interface); err != nil {
			return nil, fmt.Errorf("bgp.router_id not set, and %w", err)
		}
	}
	return announce.New(announce.Options{ASN: b.ASN, RouterID: rid, HoldTime: b.HoldTime, Peers: bgpPeers(b),
		Logger: d.log.With("component", "bgp"), Registerer: d.reg})
}

// firstIPv4 is the first IPv4 address of the interface, the default BGP identifier.
func firstIPv4(ifname string) (netip.Addr, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface %s: %w", ifname, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifname, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() {
				return ip.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address", ifname)
}

func bgpPeers(b *config.BGP) []announce.Peer {
	out := make([]announce.Peer, len(b.Peers))
	for i, p := range b.Peers {
		out[i] = announce.Peer{Address: p.Address, ASN: p.ASN, BFD: p.BFD}
	}
	return out
}

func bgpAttrs(b *config.BGP) announce.Attrs {
	a := announce.Attrs{MED: b.MED}
	for _, c := range b.Communities {
		a.Communities = append(a.Communities, uint32(c))
	}
	return a
}

// checkBGPReload refuses a reload that would restart the BGP sessions: a bgp section added
// or removed, another asn, router_id or hold_time, or another asn or bfd for a peer that
// stays. Peers added or removed, communities, med, the delays and min_healthy are applied
// in place.
func checkBGPReload(old, new *config.BGP) error {
	switch {
	case old == nil && new == nil:
		return nil
	case old == nil || new == nil:
		return fmt.Errorf("bgp section added or removed: %w", ErrRestartNeeded)
	case old.ASN != new.ASN || old.RouterID != new.RouterID || old.HoldTime != new.HoldTime:
		return fmt.Errorf("bgp asn, router_id or hold_time changed (the sessions would restart): %w", ErrRestartNeeded)
	}
	for _, p := range new.Peers {
		i := slices.IndexFunc(old.Peers, func(o config.BGPPeer) bool { return o.Address == p.Address })
		if i >= 0 && (old.Peers[i].ASN != p.ASN || old.Peers[i].BFD != p.BFD) {
			return fmt.Errorf("bgp peer %s: asn or bfd changed (its session would restart; remove it and add it back in two reloads to do that): %w",
				p.Address, ErrRestartNeeded)
		}
	}
	return nil
}

// agreement is how this node's config and rings compare with the live LB nodes'.
type agreement struct {
	joining    bool // the first attempt to join the cluster has not ended
	live       int  // live members, this node included
	sameConfig int  // of them, with this node's config digest
	sameRings  int  // of them, with this node's config digest and ring fingerprint
	// the live members' config digests and ring fingerprints, by name: a difference withdraws
	// only while these stay the same (announce.Reason.Key)
	configs, rings string
}

// agreementOf counts from the cluster's status (members alive or leaving are live).
func agreementOf(cs cluster.Status) agreement {
	var self cluster.Member
	for _, m := range cs.Members {
		if m.Self {
			self = m
		}
	}
	a := agreement{joining: !cs.JoinAttempted}
	var configs, rings strings.Builder
	for _, m := range cs.Members { // sorted by name
		if m.State != "alive" && m.State != "leaving" {
			continue
		}
		fmt.Fprintf(&configs, "%s=%s;", m.Name, m.ConfigDigest)
		fmt.Fprintf(&rings, "%s=%s;", m.Name, m.Fingerprint)
		a.live++
		if !m.SameConfig {
			continue
		}
		a.sameConfig++
		if m.Voter && m.Fingerprint == self.Fingerprint {
			a.sameRings++
		}
	}
	a.configs, a.rings = configs.String(), rings.String()
	return a
}

// reasons says what agreement holds back: before the first attempt to join ends, everything;
// in a minority, a config or ring difference that stays the same for agreeSettle; with
// exactly half, the node keeps what it announces but announces nothing new (a 2-node cluster
// in the middle of a rolling change keeps serving).
func (a agreement) reasons() []announce.Reason {
	if a.joining {
		return []announce.Reason{{Code: announce.ReasonJoining, Detail: "joining the cluster: the other LB nodes are not known yet"}}
	}
	check := func(same int, code, what, key string) []announce.Reason {
		grace := agreeSettle
		switch {
		case 2*same > a.live:
			return nil
		case 2*same == a.live:
			grace = announce.Forever
		}
		return []announce.Reason{{Code: code, Grace: grace, Key: key,
			Detail: fmt.Sprintf("%s is shared by %d of %d live LB nodes, not a majority", what, same, a.live)}}
	}
	if r := check(a.sameConfig, announce.ReasonConfigDiffers, "this node's config digest", a.configs); r != nil {
		return r
	}
	return check(a.sameRings, announce.ReasonRingsDiffer, "this node's ring fingerprint", a.rings)
}

// wanted lists every VIP address of cfg, in cfg's order, with what keeps it from being
// announced: a VIP not written into the data path (views are what was written), a VIP with
// fewer than min_healthy backends in its ring, no peer of the address's family, and
// disagreement with the cluster (nil agree: no cluster).
func wanted(cfg *config.Config, views []vipView, agree *agreement) []announce.Wanted {
	var out []announce.Wanted
	at := map[netip.Addr]int{}
	for _, vc := range cfg.VIPs {
		i, ok := at[vc.Address]
		if !ok {
			i = len(out)
			at[vc.Address] = i
			out = append(out, announce.Wanted{Addr: vc.Address})
		}
		w := &out[i]
		w.VIPs = append(w.VIPs, vc.Name)
		j := slices.IndexFunc(views, func(v vipView) bool {
			return v.cfg.Name == vc.Name && v.cfg.Address == vc.Address && v.cfg.Port == vc.Port && v.cfg.Proto == vc.Proto
		})
		if j < 0 {
			w.Reasons = append(w.Reasons, announce.Reason{Code: announce.ReasonDataplane,
				Detail: fmt.Sprintf("vip %s is not written into the data path", vc.Name)})
			continue
		}
		in := 0
		for _, b := range views[j].backends {
			if backends.StateOf(b) == backends.Active {
				in++
			}
		}
		if in < vc.BGP.MinHealthy {
			w.Reasons = append(w.Reasons, announce.Reason{Code: announce.ReasonMinHealthy,
				Detail: fmt.Sprintf("vip %s has %d of %d backends in its ring, min_healthy %d", vc.Name, in, len(vc.Backends), vc.BGP.MinHealthy)})
		}
	}
	// then what holds every address of the node, or of a family
	var common []announce.Reason
	if agree != nil {
		common = agree.reasons()
	}
	for i := range out {
		w := &out[i]
		if !slices.ContainsFunc(cfg.BGP.Peers, func(p config.BGPPeer) bool { return p.Address.Is4() == w.Addr.Is4() }) {
			w.Reasons = append(w.Reasons, announce.Reason{Code: announce.ReasonNoPeer,
				Detail: fmt.Sprintf("no bgp peer is %s", map[bool]string{true: "IPv4", false: "IPv6"}[w.Addr.Is4()])})
		}
		w.Reasons = append(w.Reasons, common...)
	}
	return out
}

// announceLocked tells the announcer what to announce now.
func (d *Daemon) announceLocked(cs *cluster.Status) {
	if d.announcer == nil {
		return
	}
	var agree *agreement
	if cs != nil {
		a := agreementOf(*cs)
		agree = &a
	}
	d.announcer.Update(d.cfg.BGP.AnnounceDelay, bgpAttrs(d.cfg.BGP), wanted(d.cfg, d.vips, agree))
}

// drainBGP withdraws gracefully (see announce.Announcer.Shutdown) while the data path still
// forwards.
func (d *Daemon) drainBGP() {
	if d.announcer == nil {
		return
	}
	d.mu.Lock()
	drain := d.cfg.BGP.ShutdownDrain
	d.mu.Unlock()
	d.announcer.Shutdown(drain)
}
