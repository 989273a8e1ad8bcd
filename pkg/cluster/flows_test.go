package cluster

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// inbox collects the flow sync messages a node receives.
type inbox struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (b *inbox) take(msg []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, msg)
}

func (b *inbox) got() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.msgs)
}

func TestFlowsGoToOneMember(t *testing.T) {
	boxes := map[string]*inbox{"a": {}, "b": {}, "c": {}}
	nodes := startCluster(t, 3, func(o *Options) { o.OnFlows = boxes[o.NodeName].take })
	a := nodes[0]
	if got := a.FlowPeers(); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("a's flow peers %v, want [b c]", got)
	}
	big := bytes.Repeat([]byte("flows"), 64<<10/5) // as large as a flow sync message gets
	for _, msg := range [][]byte{[]byte("hello"), big} {
		if err := a.SendFlows("b", msg); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, propagateTimeout, "b receives both messages", func() error {
		if n := len(boxes["b"].got()); n != 2 {
			return fmt.Errorf("b has %d messages", n)
		}
		return nil
	})
	// each message has a stream of its own, and memberlist reads streams concurrently: two
	// sends may arrive in either order (seen on a busy machine)
	got := boxes["b"].got()
	slices.SortFunc(got, func(x, y []byte) int { return len(x) - len(y) })
	if !bytes.Equal(got[0], []byte("hello")) || !bytes.Equal(got[1], big) {
		t.Errorf("b received %d and %d bytes, not what a sent", len(got[0]), len(got[1]))
	}
	if n := len(boxes["c"].got()) + len(boxes["a"].got()); n != 0 {
		t.Errorf("%d messages reached a or c: flows are not gossiped", n)
	}
	if err := a.SendFlows("z", []byte("x")); err == nil {
		t.Errorf("sent to a node that is not a member")
	}
}
