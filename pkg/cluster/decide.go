package cluster

import (
	"errors"
	"slices"
)

// ErrBadQuorum is wrapped by errors about an unknown quorum.
var ErrBadQuorum = errors.New("bad quorum")

// Quorum says how many of the LB nodes that probe a backend must see it up
// for the backend to be in the ring.
type Quorum string

const (
	// QuorumMajority: strictly more than half of the probing nodes. With two
	// probing nodes that disagree the backend is out.
	QuorumMajority Quorum = "majority"
	// QuorumAny: at least one probing node.
	QuorumAny Quorum = "any"
	// QuorumAll: every probing node.
	QuorumAll Quorum = "all"
)

// Quorums lists the quorums, the default (majority) first. pkg/config accepts these names.
func Quorums() []Quorum { return []Quorum{QuorumMajority, QuorumAny, QuorumAll} }

// valid reports whether q is one of Quorums.
func (q Quorum) valid() bool { return slices.Contains(Quorums(), q) }

// NodeView is one LB node's gossiped state.
type NodeView struct {
	// ConfigDigest is the digest of the configuration the view was made
	// under; only views with this node's digest are merged.
	ConfigDigest string
	// Version grows with every change; a newer version replaces an older one.
	Version uint64
	// Fingerprint of the node's rings.
	Fingerprint string
	// Backends holds the node's probe results: true = up. A backend the node
	// does not probe (or has no result for yet) is absent: the node does not
	// vote on it. The map is never modified once published.
	Backends map[BackendKey]bool
	// Leaving: the node announced that it leaves. It votes until memberlist
	// reports it gone; Status tells a leave from a failure by it.
	Leaving bool
}

// Decide computes the verdict from the gossiped views. It is a pure function
// of its arguments, so every node that holds the same views and membership
// computes the same verdict.
//
// The voters are the nodes in live plus local itself that have a view carrying
// the same ConfigDigest as views[local]. A backend is in the result when at
// least one voter probes it; its value is true when the quorum q of the voters
// that probe it see it up. A node alone decides alone. An unknown quorum is
// treated as majority (New rejects it earlier).
func Decide(local string, views map[string]NodeView, live []string, q Quorum) map[BackendKey]bool {
	digest := views[local].ConfigDigest
	voters := make([]map[BackendKey]bool, 0, len(live)+1)
	seen := make(map[string]bool, len(live)+1)
	for _, name := range append([]string{local}, live...) {
		if seen[name] {
			continue
		}
		seen[name] = true
		v, ok := views[name]
		if !ok || v.ConfigDigest != digest {
			continue
		}
		voters = append(voters, v.Backends)
	}

	type tally struct{ up, probers int }
	size := 0
	for _, backends := range voters {
		size = max(size, len(backends))
	}
	tallies := make(map[BackendKey]tally, size)
	for _, backends := range voters {
		for key, up := range backends {
			t := tallies[key]
			t.probers++
			if up {
				t.up++
			}
			tallies[key] = t
		}
	}

	verdict := make(map[BackendKey]bool, len(tallies))
	for key, t := range tallies {
		verdict[key] = quorate(q, t.up, t.probers)
	}
	return verdict
}

// quorate reports whether up of probers meet the quorum q.
func quorate(q Quorum, up, probers int) bool {
	switch q {
	case QuorumAny:
		return up >= 1
	case QuorumAll:
		return probers > 0 && up == probers
	default:
		return 2*up > probers
	}
}
