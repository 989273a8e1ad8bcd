package cluster

import (
	"math"
	"slices"
	"sync"
)

// maxBroadcastSize is the largest node state sent by UDP gossip. A gossip
// packet holds UDPBufferSize (1400) bytes minus memberlist's headers,
// encryption (~45 bytes) and its own broadcasts; a larger state would sit in
// the queue forever, so it is sent to each member over TCP instead (sender).
const maxBroadcastSize = 1024

// stateQueue holds the node states waiting to be gossiped: at most one per
// node, the newest queued, each sent a limited number of times.
//
// It replaces memberlist.TransmitLimitedQueue, which can silently lose a
// queued broadcast (hashicorp/memberlist#263, #322, unfixed in v0.7.0): when
// a named broadcast replaces the only one queued, the queue's id generator is
// reset after the new item took its id, so a later broadcast of the same
// length gets the same id and takes its place in the queue's B-tree. Node
// states of the same shape have the same length, so a node's latest state was
// regularly dropped by the relay of another node's (seen in end-to-end runs:
// the others kept a stale state until the next push-pull).
type stateQueue struct {
	// numNodes and retransmitMult set how often a state is sent, as in
	// memberlist: retransmitMult × ⌈log10(numNodes+1)⌉ times.
	numNodes       func() int
	retransmitMult int

	mu    sync.Mutex // taken last: no other lock is taken while it is held
	seq   uint64
	items map[string]*queuedState // by node name
}

type queuedState struct {
	node      string
	version   uint64
	msg       []byte
	transmits int
	seq       uint64 // when queued: newer ones go first among equal transmits
}

func newStateQueue(numNodes func() int, retransmitMult int) *stateQueue {
	return &stateQueue{numNodes: numNodes, retransmitMult: retransmitMult, items: map[string]*queuedState{}}
}

// queue queues msg, node's state at version, in place of the node's queued
// state unless that one is newer: a stale state never replaces a newer one,
// whatever order concurrent callers get here in. Queueing the same version
// again sends it afresh. It reports whether msg was queued.
func (q *stateQueue) queue(node string, version uint64, msg []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if cur, ok := q.items[node]; ok && cur.version > version {
		return false
	}
	q.seq++
	q.items[node] = &queuedState{node: node, version: version, msg: msg, seq: q.seq}
	return true
}

// drop removes node's queued state unless it is newer than version (a state
// that went to every member over TCP instead).
func (q *stateQueue) drop(node string, version uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if cur, ok := q.items[node]; ok && cur.version <= version {
		delete(q.items, node)
	}
}

// getBroadcasts returns the states to put in one packet, up to limit bytes
// with overhead bytes for each: the least sent first, the newest first among
// those. A state is dropped once sent its number of times.
func (q *stateQueue) getBroadcasts(overhead, limit int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil
	}
	items := make([]*queuedState, 0, len(q.items))
	for _, it := range q.items {
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b *queuedState) int {
		if a.transmits != b.transmits {
			return a.transmits - b.transmits
		}
		switch {
		case a.seq > b.seq:
			return -1
		case a.seq < b.seq:
			return 1
		}
		return 0
	})
	transmitLimit := retransmitLimit(q.retransmitMult, q.numNodes())
	var out [][]byte
	used := 0
	for _, it := range items {
		if used+overhead+len(it.msg) > limit {
			continue
		}
		used += overhead + len(it.msg)
		out = append(out, it.msg)
		it.transmits++
		if it.transmits >= transmitLimit {
			delete(q.items, it.node)
		}
	}
	return out
}

// retransmitLimit is memberlist's: how many times a broadcast is sent in a
// cluster of n nodes.
func retransmitLimit(retransmitMult, n int) int {
	return max(1, retransmitMult*int(math.Ceil(math.Log10(float64(n+1)))))
}
