package cluster

import (
	"maps"
	"slices"
)

// Status is this node's picture of the cluster, for `lbd status`.
type Status struct {
	Node         string
	ConfigDigest string
	Quorum       Quorum
	// Members, sorted by name: live ones and those seen leaving or dying.
	Members []Member
	// Backends, sorted by key: every backend a voter probes.
	Backends []BackendStatus
	// FingerprintsAgree is true when every live member with this node's
	// config has published the same ring fingerprint as this node.
	FingerprintsAgree bool
	// JoinAttempted is true once the first attempt to join the seeds has
	// ended, in success or not (at once without seeds): until then this node
	// may not know the others yet.
	JoinAttempted bool
}

// Member is one LB node as this node sees it.
type Member struct {
	Name string
	Addr string
	// State is alive (suspects included: they vote until declared dead),
	// leaving (announced, not yet gone), left (announced) or dead (failed).
	State string
	// ConfigDigest from the node's meta; SameConfig when it equals this
	// node's (only then is its view merged).
	ConfigDigest string
	SameConfig   bool
	// Voter: live and its gossiped state was made under this node's config,
	// so Decide counts its view.
	Voter       bool
	Fingerprint string
	ViewVersion uint64 // 0 when no state has arrived yet
	Self        bool
}

// BackendStatus is one backend: each voter's view and the verdict.
type BackendStatus struct {
	Key BackendKey
	// Views by node name, only of the voters that probe it.
	Views   map[string]bool
	Up      int
	Probers int
	InRing  bool
}

// Status returns a snapshot of members, views and verdict.
func (c *Cluster) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	own := c.states[c.name]
	st := Status{
		Node:              c.name,
		ConfigDigest:      own.ConfigDigest,
		Quorum:            c.quorum,
		FingerprintsAgree: c.agree,
		JoinAttempted:     c.joinAttempted.Load(),
	}

	names := slices.Collect(maps.Keys(c.members))
	if _, ok := c.members[c.name]; !ok {
		names = append(names, c.name)
	}
	slices.Sort(names)
	voters := map[string]bool{}
	for _, name := range names {
		mm := c.members[name]
		live := name == c.name || (mm != nil && mm.live)
		v, known := c.states[name]
		m := Member{Name: name, Self: name == c.name}
		if mm != nil {
			m.Addr, m.ConfigDigest = mm.addr, mm.digest
		}
		if m.Self {
			m.ConfigDigest = own.ConfigDigest
		}
		switch {
		case live && v.Leaving:
			m.State = "leaving"
		case live:
			m.State = "alive"
		case v.Leaving:
			m.State = "left"
		default:
			m.State = "dead"
		}
		m.SameConfig = c.sameConfigLocked(name)
		if known {
			m.Fingerprint, m.ViewVersion = v.Fingerprint, v.Version
			m.Voter = live && v.ConfigDigest == own.ConfigDigest // as in Decide
		}
		voters[name] = m.Voter
		st.Members = append(st.Members, m)
	}

	for key, in := range c.verdict {
		b := BackendStatus{Key: key, InRing: in, Views: map[string]bool{}}
		for name, voter := range voters {
			if !voter {
				continue
			}
			if up, ok := c.states[name].Backends[key]; ok {
				b.Views[name] = up
				b.Probers++
				if up {
					b.Up++
				}
			}
		}
		st.Backends = append(st.Backends, b)
	}
	slices.SortFunc(st.Backends, func(a, b BackendStatus) int { return a.Key.Compare(b.Key) })
	return st
}
