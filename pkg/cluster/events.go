package cluster

import (
	"github.com/hashicorp/memberlist"
)

// events follows membership: a node that joins votes (once its state is
// known), a node that is declared dead or leaves stops voting at once.
//
// memberlist calls these with its node lock held: they must not call into
// memberlist.
type events struct {
	c *Cluster
}

var (
	_ memberlist.EventDelegate    = (*events)(nil)
	_ memberlist.ConflictDelegate = (*events)(nil)
)

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.c.log.Info("cluster member joined", "member", n.Name, "addr", n.Address())
	e.c.memberChanged(n, true)
	if n.Name != e.c.name {
		// let the newcomer hear this node's state now, not at the next push-pull
		e.c.publish(true)
	}
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	// n.State is not maintained by memberlist: it cannot tell a leave from a
	// failure here (Status can, from the node's last state)
	e.c.log.Info("cluster member gone", "member", n.Name, "addr", n.Address())
	e.c.memberChanged(n, false)
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	e.c.memberChanged(n, true)
}

func (e *events) NotifyConflict(existing, other *memberlist.Node) {
	e.c.log.Error("cluster node name conflict: two nodes use the same name",
		"member", existing.Name, "addr", existing.Address(), "other_addr", other.Address())
}
