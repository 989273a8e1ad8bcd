package cluster

import (
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"
)

// drainBroadcasts takes everything a node has queued for gossip, as if sent,
// and returns the newest version of each node's state among it.
func drainBroadcasts(t *testing.T, n *testNode) map[string]uint64 {
	t.Helper()
	d := &delegate{c: n.Cluster}
	got := map[string]uint64{}
	for range 1000 {
		msgs := d.GetBroadcasts(0, 1<<20)
		if len(msgs) == 0 {
			return got
		}
		for _, m := range msgs {
			typ, states, err := decodeMessage(m)
			if err != nil || typ != msgNodeState || len(states) != 1 {
				t.Fatalf("broadcast %q: %v", m, err)
			}
			got[states[0].Node] = max(got[states[0].Node], states[0].Version)
		}
	}
	t.Fatal("broadcast queue never empties")
	return nil
}

// A node's latest state stays queued for gossip whatever else is queued
// after it. memberlist's TransmitLimitedQueue lost it here: replacing the
// only queued broadcast reset its id generator, so the second relayed state,
// of the same length as the node's own, got the same id and took its place.
func TestOwnStateNotDisplacedFromQueue(t *testing.T) {
	a := startNode(t, "a") // alone: nothing but this test takes its broadcasts
	a.SetFingerprint("fp-0")
	drainBroadcasts(t, a)

	a.SetLocal(map[BackendKey]bool{b1: true})
	a.SetFingerprint("fp-1") // replaces the queued state
	v := a.ownVersion()
	for _, name := range []string{"b", "c"} {
		msg, err := encodeMessage(msgNodeState, toWire(name, NodeView{
			ConfigDigest: "digest-1", Version: v, Fingerprint: "fp-1", Backends: map[BackendKey]bool{b1: true},
		}))
		if err != nil {
			t.Fatal(err)
		}
		(&delegate{c: a.Cluster}).NotifyMsg(msg) // taken in and relayed
	}
	if got, want := drainBroadcasts(t, a), map[string]uint64{"a": v, "b": v, "c": v}; !maps.Equal(got, want) {
		t.Errorf("gossiped %v, want %v", got, want)
	}
}

func TestStateQueue(t *testing.T) {
	nodes := 3
	q := newStateQueue(func() int { return nodes }, 4) // 4 transmits for 3 nodes
	msg := func(s string) []byte { return []byte(s) }

	// a stale state never replaces a newer one, a newer one replaces it
	q.queue("a", 5, msg("a5"))
	if q.queue("a", 4, msg("a4")) {
		t.Error("an older state replaced a newer one")
	}
	if v, _ := q.queued("a"); v != 5 {
		t.Errorf("queued version %d, want 5", v)
	}
	q.queue("a", 6, msg("a6"))
	// states of the same length are all kept
	q.queue("b", 1, msg("b1"))
	q.queue("c", 1, msg("c1"))
	if n := q.len(); n != 3 {
		t.Fatalf("%d states queued, want 3", n)
	}

	// the least sent go first, the newest first among those; each is sent
	// its number of times, only as many as fit
	want := [][]string{{"c1", "b1"}, {"a6", "c1"}, {"b1", "a6"}, {"c1", "b1"}, {"a6", "c1"}, {"b1", "a6"}}
	for i, w := range want {
		got := q.getBroadcasts(1, 6) // room for two
		if fmt.Sprintf("%s", got) != fmt.Sprintf("%s", w) {
			t.Errorf("packet %d: %s, want %s", i, got, w)
		}
	}
	if got := q.getBroadcasts(1, 100); got != nil || q.len() != 0 {
		t.Errorf("after 4 transmits each: %s, %d queued", got, q.len())
	}

	// queueing the same version again sends it afresh; drop removes a
	// state unless a newer one is queued
	q.queue("a", 7, msg("a7"))
	q.getBroadcasts(0, 100)
	q.queue("a", 7, msg("a7"))
	for range 4 {
		if got := q.getBroadcasts(0, 100); len(got) != 1 {
			t.Fatalf("requeued state: %s", got)
		}
	}
	q.queue("a", 8, msg("a8"))
	q.drop("a", 7)
	if _, ok := q.queued("a"); !ok {
		t.Error("drop removed a newer state")
	}
	q.drop("a", 8)
	if _, ok := q.queued("a"); ok {
		t.Error("drop left the state")
	}
}

// withRepublish sets how a test's nodes republish their state.
func withRepublish(t *testing.T, every, window time.Duration) {
	oldEvery, oldFor := republishEvery, republishFor
	republishEvery, republishFor = every, window
	t.Cleanup(func() { republishEvery, republishFor = oldEvery, oldFor })
}

// Rapid updates from several goroutines on every node at once, as when a
// backend changes state on every node (SetLocal, then SetFingerprint once the
// rings are rebuilt): every node's last state reaches every other node by
// gossip, well before the push-pull (every 10s) could make up for a loss.
// Republishing is off, so a state lost by the gossip queue stays lost.
func TestRapidUpdatesReachEveryNode(t *testing.T) {
	withRepublish(t, 0, 0)
	nodes := startCluster(t, 3)
	const bound = 2 * time.Second
	var slowest time.Duration
	for r := range 20 {
		view := map[BackendKey]bool{b1: r%2 == 0, b2: true, b3: r%3 != 0}
		fp := fmt.Sprintf("ring-%02d", r)
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Go(func() {
				n.SetLocal(view)
				// pacing, not synchronisation: the nodes rebuild their rings at
				// different moments, as they would after a backend changed state
				time.Sleep(time.Duration(5+5*i) * time.Millisecond)
				n.SetFingerprint(fp)
			})
		}
		// and concurrent updates on one node
		for j := range 4 {
			wg.Go(func() {
				nodes[0].SetFingerprint(fmt.Sprintf("%s/%d", fp, j))
				nodes[0].SetLocal(map[BackendKey]bool{b4: j%2 == 0})
				nodes[0].SetLocal(view)
			})
		}
		wg.Wait()
		nodes[0].SetFingerprint(fp)

		took := eventually(t, bound, fmt.Sprintf("round %d: every node's last state reaches every node (else it was lost in gossip)", r), allSee(nodes))
		for _, n := range nodes {
			for _, m := range n.Status().Members {
				if m.Fingerprint != fp {
					t.Fatalf("round %d: %s sees %s's fingerprint %q, want %q", r, n.name, m.Name, m.Fingerprint, fp)
				}
			}
		}
		slowest = max(slowest, took)
		// pacing, not synchronisation: vary the phase against the gossip ticks
		time.Sleep(time.Duration(r%5) * 30 * time.Millisecond)
	}
	t.Logf("every round's last states reached every node within %v", slowest)
}

// While its state changed recently a node queues it again, so a state whose
// every transmission was lost still gets through.
func TestStateRepublishedWhileRecent(t *testing.T) {
	withRepublish(t, 50*time.Millisecond, 500*time.Millisecond)
	a := startNode(t, "a")
	a.SetFingerprint("fp-1")
	v := a.ownVersion()
	drainBroadcasts(t, a) // all lost
	eventually(t, time.Second, "state queued again", func() error {
		if got, ok := a.broadcasts.queued("a"); !ok || got != v {
			return fmt.Errorf("queued %d (%v), want %d", got, ok, v)
		}
		return nil
	})

	// the change is no longer recent, and the republisher has ticked since it
	// last saw it recent (so no republish of it is under way)
	eventually(t, 2*time.Second, "the change is no longer recent", func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if since := time.Since(a.ownChanged); since < a.republishFor+a.republishEvery {
			return fmt.Errorf("changed %v ago", since)
		}
		return nil
	})
	drainBroadcasts(t, a)
	// an observation window, not a wait: nothing may be queued in four republish
	// intervals
	time.Sleep(4 * republishEvery)
	if got, ok := a.broadcasts.queued("a"); ok {
		t.Errorf("version %d queued again long after the change", got)
	}
}

// queued and len look into a stateQueue for the tests; the package never needs to.

// queued returns the version of node's queued state, if any.
func (q *stateQueue) queued(node string) (uint64, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	cur, ok := q.items[node]
	if !ok {
		return 0, false
	}
	return cur.version, true
}

// len is the number of states queued.
func (q *stateQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
