package cluster

import (
	"github.com/hashicorp/memberlist"
)

// maxBroadcastSize is the largest node state sent by UDP gossip. A gossip
// packet holds UDPBufferSize (1400) bytes minus memberlist's headers,
// encryption (~45 bytes) and its own broadcasts; a larger state would sit in
// the queue forever, so it is sent to each member over TCP instead (sender).
const maxBroadcastSize = 1024

// stateBroadcast is one node's state queued for gossip. It is named by the
// node, so queueing a newer state of a node drops the older one still queued.
type stateBroadcast struct {
	node string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*stateBroadcast)(nil)

func (b *stateBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*stateBroadcast)
	return ok && o.node == b.node
}

func (b *stateBroadcast) Name() string    { return "state/" + b.node }
func (b *stateBroadcast) Message() []byte { return b.msg }
func (b *stateBroadcast) Finished()       {}
