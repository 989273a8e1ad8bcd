package cluster

// Flow sync's transport (pkg/flowsync): its messages go to each member over memberlist's
// streams, encrypted and authenticated like gossip, and arrive at Options.OnFlows. They
// are sent once to each member by their sender and never relayed: gossip would multiply
// their bytes by the retransmissions, and their size is the sync's cost.

import (
	"fmt"
	"slices"
)

// FlowPeers lists the live members other than this node, by name.
func (c *Cluster) FlowPeers() []string {
	var out []string
	for _, n := range c.ml.Members() {
		if n.Name != c.name {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

// SendFlows sends msg, a flow sync message, to the member named node over a stream (TCP),
// and fails when it is not a live member or the stream fails. Each message has a stream of
// its own and the receiver reads streams concurrently, so two messages may arrive in
// either order: each must stand alone.
func (c *Cluster) SendFlows(node string, msg []byte) error {
	for _, n := range c.ml.Members() {
		if n.Name == node {
			if err := c.ml.SendReliable(n, append([]byte{byte(msgFlows)}, msg...)); err != nil {
				return fmt.Errorf("cluster: send flows to %s: %w", node, err)
			}
			return nil
		}
	}
	return fmt.Errorf("cluster: send flows to %s: not a live member", node)
}

// receiveFlows hands a flow sync message to OnFlows; buf is only valid during the call.
func (c *Cluster) receiveFlows(buf []byte) {
	if c.onFlows != nil {
		c.onFlows(append([]byte(nil), buf...))
	}
}
