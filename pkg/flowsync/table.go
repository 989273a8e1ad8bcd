package flowsync

import (
	"slices"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
)

// table holds the flows other nodes shared with this one: the adopted flows. Each entry
// remembers which nodes share it and when each last did; an entry lives while one of them
// keeps sharing it (every refresh) and goes when the last withdraws it or falls silent for
// ttl. The table mirrors what the data path's adopted maps hold (inMap): entries whose
// VIP or backend this node does not serve stay here, unresolved, until an apply resolves
// them. Each family holds at most max entries, the size of its map.
type table struct {
	max     int
	ttl     time.Duration
	entries map[dataplane.Flow]*adopted
	count   [2]int // entries by family (0: IPv4, 1: IPv6)
	inMap   [2]int // of which written to the data path
}

type adopted struct {
	flow    dataplane.SharedFlow
	origins []origin // the nodes that share the flow: one, or a few when it moved
	inMap   bool
}

type origin struct {
	node string
	at   time.Time // when it last shared the flow
}

// set records that node shared the flow at.
func (e *adopted) set(node string, at time.Time) {
	for i := range e.origins {
		if e.origins[i].node == node {
			e.origins[i].at = at
			return
		}
	}
	e.origins = append(e.origins, origin{node, at})
}

// unset forgets node.
func (e *adopted) unset(node string) {
	e.origins = slices.DeleteFunc(e.origins, func(o origin) bool { return o.node == node })
}

func newTable(max int, ttl time.Duration) *table {
	return &table{max: max, ttl: ttl, entries: map[dataplane.Flow]*adopted{}}
}

func fam(f dataplane.Flow) int {
	if f.Src.Is4() {
		return 0
	}
	return 1
}

// change is what the data path must be told after the table changed: flows to write (with
// their backend) and flows to remove.
type change struct {
	put    []dataplane.SharedFlow
	remove []dataplane.Flow
}

// share records that node shares flows at now. New flows, and flows whose backend changed,
// are to be written; flows beyond the table's bound are refused and counted in full.
func (t *table) share(node string, flows []dataplane.SharedFlow, now time.Time) (c change, full int) {
	for _, f := range flows {
		e, ok := t.entries[f.Flow]
		if !ok {
			if t.count[fam(f.Flow)] >= t.max {
				full++
				continue
			}
			e = &adopted{flow: f}
			t.entries[f.Flow] = e
			t.count[fam(f.Flow)]++
			c.put = append(c.put, f)
		} else if e.flow != f {
			// the newest word on the flow wins (a flow that moved again, a backend
			// reweighted back): its old target is stale
			e.flow = f
			c.put = append(c.put, f)
		}
		e.set(node, now)
	}
	return c, full
}

// withdraw records that node no longer shares flows; a flow nobody shares any more is to
// be removed.
func (t *table) withdraw(node string, flows []dataplane.Flow) (c change) {
	for _, f := range flows {
		e, ok := t.entries[f]
		if !ok {
			continue
		}
		e.unset(node)
		if len(e.origins) == 0 {
			c.remove = append(c.remove, t.drop(f, e)...)
		}
	}
	return c
}

// drop deletes an entry; it returns the flow when the data path holds it.
func (t *table) drop(f dataplane.Flow, e *adopted) []dataplane.Flow {
	delete(t.entries, f)
	t.count[fam(f)]--
	if e.inMap {
		t.inMap[fam(f)]--
		return []dataplane.Flow{f}
	}
	return nil
}

// expire forgets the origins silent for longer than ttl at now, and the flows left with
// none.
func (t *table) expire(now time.Time) (c change) {
	for f, e := range t.entries {
		e.origins = slices.DeleteFunc(e.origins, func(o origin) bool { return now.Sub(o.at) > t.ttl })
		if len(e.origins) == 0 {
			c.remove = append(c.remove, t.drop(f, e)...)
		}
	}
	return c
}

// resolved marks flows written to the data path, except those in unresolved, which it
// did not write. It returns the unresolved flows the data path still holds under an older
// backend: they are to be removed.
func (t *table) resolved(put, unresolved []dataplane.SharedFlow) (stale []dataplane.Flow) {
	out := make(map[dataplane.Flow]bool, len(unresolved))
	for _, f := range unresolved {
		out[f.Flow] = true
	}
	for _, f := range put {
		e, ok := t.entries[f.Flow]
		if !ok {
			continue
		}
		in := !out[f.Flow]
		switch {
		case in && !e.inMap:
			t.inMap[fam(f.Flow)]++
		case !in && e.inMap:
			t.inMap[fam(f.Flow)]--
			stale = append(stale, f.Flow)
		}
		e.inMap = in
	}
	return stale
}

// all is every entry, to write again after this node's backends changed.
func (t *table) all() []dataplane.SharedFlow {
	out := make([]dataplane.SharedFlow, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, e.flow)
	}
	return out
}

// clear forgets everything; it returns the flows the data path holds.
func (t *table) clear() []dataplane.Flow {
	var out []dataplane.Flow
	for f, e := range t.entries {
		out = append(out, t.drop(f, e)...)
	}
	return out
}

// unresolved counts the entries the data path does not hold.
func (t *table) unresolved() int {
	return t.count[0] + t.count[1] - t.inMap[0] - t.inMap[1]
}

// restore takes back flows a previous run left in the data path, as shared by nobody in
// particular at now: they live until ttl unless someone shares them again.
func (t *table) restore(flows []dataplane.SharedFlow, now time.Time) {
	for _, f := range flows {
		if _, ok := t.entries[f.Flow]; ok || t.count[fam(f.Flow)] >= t.max {
			continue
		}
		t.entries[f.Flow] = &adopted{flow: f, origins: []origin{{restoredOrigin, now}}, inMap: true}
		t.count[fam(f.Flow)]++
		t.inMap[fam(f.Flow)]++
	}
}

// restoredOrigin stands for the unknown node that shared a flow before a restart.
const restoredOrigin = ""
