package cluster

import (
	"github.com/hashicorp/memberlist"
)

// delegate carries the cluster state through memberlist: the config digest in
// the node meta, node states in broadcasts and direct messages, and every
// known node state in push-pull.
//
// memberlist may call these with its own locks held; they take only the
// Cluster's locks and never call back into memberlist.
type delegate struct {
	c *Cluster
}

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte {
	meta := *d.c.meta.Load()
	if len(meta) > limit {
		// New and SetConfigDigest bound the digest well below the limit
		return meta[:1]
	}
	return meta
}

// NotifyMsg receives a broadcast or a direct message. buf is only valid
// during the call; decoding copies what is kept.
func (d *delegate) NotifyMsg(buf []byte) {
	if len(buf) > 0 && messageType(buf[0]) == msgFlows {
		d.c.receiveFlows(buf[1:])
		return
	}
	t, states, err := decodeMessage(buf)
	if err != nil {
		d.c.log.Warn("drop cluster message", "err", err)
		return
	}
	accepted := d.c.mergeStates(states)
	if t == msgNodeState && len(accepted) == 1 && len(buf) <= maxBroadcastSize {
		d.c.relay(accepted[0], append([]byte(nil), buf...))
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.c.broadcasts.getBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte {
	b, err := d.c.encodePushPull()
	if err != nil {
		d.c.log.Error("encode push-pull state", "err", err)
		return nil
	}
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return
	}
	t, states, err := decodeMessage(buf)
	if err == nil && t != msgPushPull {
		err = errBadMessage
	}
	if err != nil {
		d.c.log.Warn("drop push-pull state", "err", err)
		return
	}
	for _, ws := range d.c.mergeStates(states) {
		d.c.relay(ws, nil)
	}
}
