package cluster

// What memberlist and the other nodes tell, merged into members, states and the verdict.

import (
	"maps"
	"time"

	"github.com/hashicorp/memberlist"
)

// memberChanged records what memberlist said about a node, and signals
// OnChange whatever changed: a member joining, leaving or announcing another
// config changes how many live nodes share this node's config and rings even
// when the verdict and the fingerprints of the nodes with this config stay.
// Called with memberlist's node lock held.
func (c *Cluster) memberChanged(n *memberlist.Node, live bool) {
	digest, known := decodeMeta(n.Meta)
	c.mu.Lock()
	m := c.members[n.Name]
	if m == nil {
		m = &member{}
		c.members[n.Name] = m
	}
	*m = member{addr: n.Address(), digest: digest, knownDigest: known, live: live}
	now := time.Now()
	if !live {
		m.goneAt = now
	}
	for name, old := range c.members {
		if name != c.name && !old.live && now.Sub(old.goneAt) > forgetAfter {
			delete(c.members, name)
			delete(c.states, name)
		}
	}
	c.recomputeLocked()
	c.mu.Unlock()
	signal(c.changed)
}

// mergeStates takes in node states from other nodes and returns those that
// were newer than what this node had.
func (c *Cluster) mergeStates(states []wireState) []wireState {
	var accepted []wireState
	refute := false
	c.mu.Lock()
	for _, ws := range states {
		if ws.Node == c.name {
			// a state of this node from an earlier run with a higher version:
			// go above it so the others take this run's state
			if own := c.states[c.name]; ws.Version > own.Version {
				own.Version = ws.Version + 1
				c.states[c.name] = own
				c.ownChanged = time.Now()
				refute = true
			}
			continue
		}
		if cur, ok := c.states[ws.Node]; ok && ws.Version <= cur.Version {
			continue
		}
		c.states[ws.Node] = ws.view()
		c.metrics.viewUpdates.Inc()
		accepted = append(accepted, ws)
	}
	changed := false
	if len(accepted) > 0 {
		changed = c.recomputeLocked()
	}
	c.mu.Unlock()
	if changed {
		signal(c.changed)
	}
	if refute {
		c.log.Info("saw this node's state from an earlier run; raised the version above it")
		c.publish(false)
	}
	return accepted
}

// recomputeLocked recomputes the verdict, the fingerprint agreement and the
// gauges, and reports whether the verdict or the fingerprints changed.
func (c *Cluster) recomputeLocked() bool {
	live := c.liveLocked()
	c.live.Store(int32(len(live)))
	verdict := Decide(c.name, c.states, live, c.quorum)

	own := c.states[c.name]
	fingerprints := make(map[string]string, len(live))
	agree := true
	mismatch := 0
	for _, name := range live {
		if !c.sameConfigLocked(name) {
			mismatch++
			continue
		}
		st, ok := c.states[name]
		if !ok || st.ConfigDigest != own.ConfigDigest {
			agree = false // its state under this config is not known yet
			continue
		}
		fingerprints[name] = st.Fingerprint
		if st.Fingerprint != own.Fingerprint {
			agree = false
		}
	}

	c.metrics.members.Set(float64(len(live)))
	c.metrics.configMismatch.Set(float64(mismatch))
	if agree {
		c.metrics.fingerprintDiverg.Set(0)
	} else {
		c.metrics.fingerprintDiverg.Set(1)
	}

	changed := !maps.Equal(verdict, c.verdict) || !maps.Equal(fingerprints, c.fingerprints) || agree != c.agree
	c.verdict, c.fingerprints, c.agree = verdict, fingerprints, agree
	return changed
}

// liveLocked lists the live members, this node always included.
func (c *Cluster) liveLocked() []string {
	live := []string{c.name}
	for name, m := range c.members {
		if m.live && name != c.name {
			live = append(live, name)
		}
	}
	return live
}

// sameConfigLocked reports whether a member announces this node's digest.
func (c *Cluster) sameConfigLocked(name string) bool {
	if name == c.name {
		return true
	}
	m := c.members[name]
	return m != nil && m.knownDigest && m.digest == c.states[c.name].ConfigDigest
}
