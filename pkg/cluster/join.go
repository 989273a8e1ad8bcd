package cluster

// Joining the seeds, and rejoining when left alone.

import (
	"time"
)

const (
	joinRetryMin = 250 * time.Millisecond
	joinRetryMax = 5 * time.Second
	// aloneCheck is how often a joined node checks whether it is alone again
	// (every other node restarted) and needs to rejoin through the seeds.
	aloneCheck = 5 * time.Second
)

// joinLoop joins the seeds while this node is alone, with backoff.
func (c *Cluster) joinLoop(seeds []string) {
	defer c.wg.Done()
	wait := time.Duration(0)
	backoff := joinRetryMin
	for {
		select {
		case <-c.done:
			return
		case <-time.After(wait):
		}
		if c.left.Load() {
			return
		}
		if c.live.Load() > 1 {
			// another node joined this one first: the same as a join
			c.joinAttemptEnded()
			wait, backoff = aloneCheck, joinRetryMin
			continue
		}
		n, err := c.ml.Join(seeds)
		c.joinAttemptEnded()
		if n > 0 {
			c.log.Info("joined cluster", "seeds_reached", n)
			wait, backoff = aloneCheck, joinRetryMin
			continue
		}
		c.metrics.joinFailures.Inc()
		c.log.Warn("join cluster: no seed reached; retrying", "seeds", seeds, "retry_in", backoff, "err", err)
		wait = backoff
		backoff = min(2*backoff, joinRetryMax)
	}
}

// joinAttemptEnded records that the first attempt to join has ended. A join exchanges every
// node state with the seed before it returns, so the members and their states are known
// now: OnChange is signalled.
func (c *Cluster) joinAttemptEnded() {
	if !c.joinAttempted.Swap(true) {
		signal(c.changed)
	}
}
