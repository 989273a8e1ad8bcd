package cluster

// Sending this node's state: gossip, relays, republishing, push-pull, and TCP for large states.

import (
	"sync"
	"time"
)

// publish gossips this node's latest state if it has not been yet, or again
// when force is set (a node joined). Concurrent calls may publish in any
// order: each one publishes the state as it is then, and the queue never
// puts an older version in place of a newer one.
func (c *Cluster) publish(force bool) {
	c.publishOwn(force, false)
}

// republish queues this node's latest state for gossip again if it fits in
// a packet (one too large went to each member over TCP, which does not lose
// it silently).
func (c *Cluster) republish() {
	c.publishOwn(true, true)
}

func (c *Cluster) publishOwn(force, gossipOnly bool) {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	own := c.states[c.name]
	c.mu.Unlock()
	if !force && own.Version <= c.published {
		return
	}
	c.published = max(c.published, own.Version)
	msg, err := encodeMessage(msgNodeState, toWire(c.name, own))
	if err != nil {
		c.log.Error("encode node state", "err", err)
		return
	}
	if len(msg) <= maxBroadcastSize {
		c.broadcasts.queue(c.name, own.Version, msg)
		return
	}
	if gossipOnly {
		return
	}
	// an earlier, smaller state may still be queued: the TCP send replaces it
	c.broadcasts.drop(c.name, own.Version)
	signal(c.sendDirect)
}

// relay passes on a state learnt from another node, gossip being epidemic
// (the originator's transmissions alone may miss a node), if it is still the
// newest this node holds of that node. msg is the state as received, or nil
// to encode it. Large states are not relayed: their originator sends them to
// every member itself.
func (c *Cluster) relay(ws wireState, msg []byte) {
	if msg == nil {
		var err error
		if msg, err = encodeMessage(msgNodeState, ws); err != nil {
			return
		}
	}
	if len(msg) > maxBroadcastSize {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.states[ws.Node]; ok && cur.Version == ws.Version {
		c.broadcasts.queue(ws.Node, ws.Version, msg)
	}
}

// republishEvery and republishFor: while this node's state changed within
// republishFor, it is queued for gossip again every republishEvery, so a
// state whose every transmission was lost still arrives within about a
// second, not at the next push-pull. Receivers that have it ignore it and do
// not relay it, so it costs a few packets after each change.
var (
	republishEvery = time.Second
	republishFor   = 5 * time.Second
)

// republisher queues this node's state again while it changed recently.
func (c *Cluster) republisher() {
	defer c.wg.Done()
	if c.republishEvery <= 0 {
		return
	}
	tick := time.NewTicker(c.republishEvery)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		c.mu.Lock()
		recent := time.Since(c.ownChanged) < c.republishFor
		c.mu.Unlock()
		if recent {
			c.republish()
		}
	}
}

// encodePushPull encodes every known node state.
func (c *Cluster) encodePushPull() ([]byte, error) {
	c.mu.Lock()
	pp := wirePushPull{States: make([]wireState, 0, len(c.states))}
	for name, v := range c.states {
		pp.States = append(pp.States, toWire(name, v))
	}
	c.mu.Unlock()
	return encodeMessage(msgPushPull, pp)
}

// sender sends this node's state to every member over TCP when it is too
// large for gossip. Requests coalesce: each send carries the latest state.
func (c *Cluster) sender() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case <-c.sendDirect:
		}
		c.mu.Lock()
		own := c.states[c.name]
		c.mu.Unlock()
		msg, err := encodeMessage(msgNodeState, toWire(c.name, own))
		if err != nil || len(msg) <= maxBroadcastSize {
			continue
		}
		var wg sync.WaitGroup
		for _, n := range c.ml.Members() {
			if n.Name == c.name {
				continue
			}
			wg.Go(func() {
				if err := c.ml.SendReliable(n, msg); err != nil {
					c.log.Debug("send node state", "member", n.Name, "err", err)
				}
			})
		}
		wg.Wait()
	}
}
