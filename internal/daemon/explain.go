package daemon

// `lbd explain`: where the data path sends one flow and why, with each LB node's view of it
// as gossip carries it. Read-only, like the rest of the API.

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/backends"
	"github.com/lbdproj/lbd/pkg/cluster"
)

// Explanation is the answer to "where does this flow go, and why" on one node.
type Explanation struct {
	Node     string `json:"node"`
	Protocol string `json:"protocol"`
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	// VIP is the name of the VIP the flow is for; empty when the destination is no VIP, and
	// xdp_lb passes its packets to the host.
	VIP        string `json:"vip,omitempty"`
	VIPAddress string `json:"vip_address,omitempty"` // addr:port/protocol, port 0 for a port wildcard
	// FlowEntry is this node's flow table entry for the flow (nil: none). Each node has its
	// own table, holding the flows the router sent it. The LRU keeps no age per entry.
	FlowEntry *dataplane.FlowEntry `json:"flow_entry,omitempty"`
	// Adopted is the flow's entry among the flows other LB nodes shared with this one
	// (flow sync), used when the flow table has no usable entry (nil: none).
	Adopted *dataplane.FlowEntry `json:"adopted,omitempty"`
	// Ring is where the VIP's ring sends the flow: a new connection (SYN), or a packet with
	// no usable entry.
	Ring dataplane.RingSlot `json:"ring"`
	// Backend is where the flow's next packet goes, empty when it is dropped (no usable
	// backend); By says why: "flow_table", "adopted" or "ring".
	Backend string `json:"backend,omitempty"`
	By      string `json:"by,omitempty"`
	// State is Backend's state in this node's rings (active, draining, down) and Probe this
	// node's own probe of it (up, down, not probed).
	State string `json:"state,omitempty"`
	Probe string `json:"probe,omitempty"`
	// RingAsBuilt is the backend this lbd's own copy of the ring names at Ring.Slot: the ring
	// it wrote. It differs from Ring.Backend only if a write to the data path failed.
	RingAsBuilt string `json:"ring_as_built,omitempty"`
	// Nodes is each LB node's view when in a cluster, from gossip; nil for a node alone.
	Nodes []NodeView `json:"nodes,omitempty"`
	// Agree: every live LB node has this config and these rings, so each sends a new
	// connection of this flow to Ring.Backend (a node alone agrees with itself).
	Agree bool `json:"agree"`
}

// NodeView is one LB node's side of a flow, as gossip shows it to this node.
type NodeView struct {
	Name       string `json:"name"`
	Self       bool   `json:"self,omitempty"`
	State      string `json:"state"` // alive, leaving, left, dead
	SameConfig bool   `json:"same_config"`
	// SameRings: its ring fingerprint equals this node's, so its ring sends the flow to the
	// same backend.
	SameRings   bool   `json:"same_rings"`
	Fingerprint string `json:"ring_fingerprint,omitempty"`
	// Probe is that node's own probe of Backend (of Ring.Backend when the flow is dropped):
	// up, down, or empty when it does not probe it or has not said.
	Probe string `json:"probe,omitempty"`
}

// ParseFlow reads a flow as lbd explain and the API take it: tcp or udp, and source and
// destination as addr:port ([addr]:port for IPv6).
func ParseFlow(proto, src, dst string) (dataplane.Flow, error) {
	var f dataplane.Flow
	switch strings.ToLower(proto) {
	case "tcp":
		f.Proto = 6
	case "udp":
		f.Proto = 17
	default:
		return f, fmt.Errorf("protocol %q: want tcp or udp", proto)
	}
	s, err := netip.ParseAddrPort(src)
	if err != nil {
		return f, fmt.Errorf("source %q: want addr:port ([addr]:port for IPv6)", src)
	}
	d, err := netip.ParseAddrPort(dst)
	if err != nil {
		return f, fmt.Errorf("destination %q: want addr:port ([addr]:port for IPv6)", dst)
	}
	if s.Addr().Unmap().Is4() != d.Addr().Unmap().Is4() {
		return f, fmt.Errorf("%s -> %s: source and destination are of different families", src, dst)
	}
	f.Src, f.SrcPort, f.Dst, f.DstPort = s.Addr().Unmap(), s.Port(), d.Addr().Unmap(), d.Port()
	return f, nil
}

// Explain asks the data path where f goes and adds what this node and the cluster know.
func (d *Daemon) Explain(f dataplane.Flow) (Explanation, error) {
	ex, err := d.lb.Explain(f)
	if err != nil {
		return Explanation{}, err
	}
	var cs *cluster.Status
	if d.cluster != nil {
		st := d.cluster.Status()
		cs = &st
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.explainLocked(f, ex, cs), nil
}

// explainLocked is the answer for f from the data path's ex and the cluster's status cs
// (nil for a node alone).
func (d *Daemon) explainLocked(f dataplane.Flow, ex dataplane.Explanation, cs *cluster.Status) Explanation {
	proto := "tcp"
	if f.Proto == 17 {
		proto = "udp"
	}
	out := Explanation{Node: d.cfg.Node.Name, Protocol: proto, Agree: true,
		Src: netip.AddrPortFrom(f.Src, f.SrcPort).String(), Dst: netip.AddrPortFrom(f.Dst, f.DstPort).String()}
	if !ex.IsVIP {
		return out
	}
	out.VIPAddress, out.FlowEntry, out.Adopted, out.Ring = ex.VIP.String(), ex.Entry, ex.Adopted, ex.Ring
	if ex.Backend.IsValid() {
		out.Backend, out.By = ex.Backend.String(), "ring"
		if ex.ByEntry {
			out.By = "flow_table"
		} else if ex.ByAdopted {
			out.By = "adopted"
		}
	}
	var view *vipView
	for i := range d.vips {
		if d.vips[i].key == ex.VIP {
			view = &d.vips[i]
		}
	}
	subject := ex.Backend // whose state each node is asked about
	if !subject.IsValid() {
		subject = ex.Ring.Backend
	}
	if view != nil {
		out.VIP = view.cfg.Name
		if int(ex.Ring.Slot) < len(view.ring) && int(ex.Ring.Size) == len(view.ring) {
			out.RingAsBuilt = view.backends[view.ring[ex.Ring.Slot]].Addr.String()
		}
		for _, b := range view.backends {
			if b.Addr == ex.Backend {
				out.State = backends.StateOf(b).String()
				out.Probe = upDown(d.local, cluster.BackendKey{VIP: view.cfg.Name, Backend: b.Addr})
			}
		}
	}
	if cs == nil {
		return out
	}
	ours := d.fingerprintLocked()
	var views map[string]bool
	for _, b := range cs.Backends {
		if view != nil && b.Key == (cluster.BackendKey{VIP: view.cfg.Name, Backend: subject}) {
			views = b.Views
		}
	}
	for _, m := range cs.Members {
		nv := NodeView{Name: m.Name, Self: m.Self, State: m.State, SameConfig: m.SameConfig,
			Fingerprint: m.Fingerprint, SameRings: m.Self || m.Fingerprint == ours}
		if up, ok := views[m.Name]; ok {
			nv.Probe = "down"
			if up {
				nv.Probe = "up"
			}
		}
		if m.State == "alive" && (!m.SameConfig || !nv.SameRings) {
			out.Agree = false
		}
		out.Nodes = append(out.Nodes, nv)
	}
	return out
}
