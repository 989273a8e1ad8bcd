package cluster

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
)

// view builds a NodeView under digest "d1" from key, up pairs.
func view(kv ...any) NodeView {
	return viewUnder("d1", kv...)
}

func viewUnder(digest string, kv ...any) NodeView {
	v := NodeView{ConfigDigest: digest, Backends: map[BackendKey]bool{}}
	for i := 0; i < len(kv); i += 2 {
		v.Backends[kv[i].(BackendKey)] = kv[i+1].(bool)
	}
	return v
}

func TestDecide(t *testing.T) {
	abc := []string{"a", "b", "c"}
	threeViews := map[string]NodeView{ // b1: 2 of 3 up; b2: 1 of 3 up
		"a": view(b1, true, b2, true),
		"b": view(b1, true, b2, false),
		"c": view(b1, false, b2, false),
	}
	type want = map[BackendKey]bool
	tests := []struct {
		name  string
		local string
		views map[string]NodeView
		live  []string
		want  map[Quorum]want // "" checks the default (majority)
	}{
		{
			name:  "three nodes agree",
			local: "a",
			views: map[string]NodeView{"a": view(b1, true, b2, false), "b": view(b1, true, b2, false), "c": view(b1, true, b2, false)},
			live:  abc,
			want: map[Quorum]want{
				"": {b1: true, b2: false}, QuorumMajority: {b1: true, b2: false},
				QuorumAny: {b1: true, b2: false}, QuorumAll: {b1: true, b2: false},
			},
		},
		{
			name:  "split views",
			local: "a",
			views: threeViews,
			live:  abc,
			want: map[Quorum]want{
				"": {b1: true, b2: false}, QuorumMajority: {b1: true, b2: false},
				QuorumAny: {b1: true, b2: true}, QuorumAll: {b1: false, b2: false},
			},
		},
		{
			name:  "same views seen from another node",
			local: "c",
			views: threeViews,
			live:  abc,
			want: map[Quorum]want{
				QuorumMajority: {b1: true, b2: false}, QuorumAny: {b1: true, b2: true}, QuorumAll: {b1: false, b2: false},
			},
		},
		{
			name:  "one node blocked from a backend stays outvoted",
			local: "c",
			views: map[string]NodeView{"a": view(b1, true), "b": view(b1, true), "c": view(b1, false)},
			live:  abc,
			want:  map[Quorum]want{QuorumMajority: {b1: true}, QuorumAny: {b1: true}, QuorumAll: {b1: false}},
		},
		{
			name:  "a node alone decides alone",
			local: "a",
			views: map[string]NodeView{"a": view(b1, true, b2, false)},
			live:  []string{"a"},
			want: map[Quorum]want{
				QuorumMajority: {b1: true, b2: false}, QuorumAny: {b1: true, b2: false}, QuorumAll: {b1: true, b2: false},
			},
		},
		{
			name:  "local counts even when missing from live",
			local: "a",
			views: map[string]NodeView{"a": view(b1, true)},
			live:  nil,
			want:  map[Quorum]want{QuorumMajority: {b1: true}},
		},
		{
			name:  "two nodes split: majority needs more than half",
			local: "a",
			views: map[string]NodeView{"a": view(b1, true), "b": view(b1, false)},
			live:  []string{"a", "b"},
			want:  map[Quorum]want{QuorumMajority: {b1: false}, QuorumAny: {b1: true}, QuorumAll: {b1: false}},
		},
		{
			name:  "a node that does not probe a backend does not vote on it",
			local: "a",
			// b2 is probed by a and b only: 1 of 2 up
			views: map[string]NodeView{"a": view(b1, true, b2, true), "b": view(b1, true, b2, false), "c": view(b1, false)},
			live:  abc,
			want: map[Quorum]want{
				QuorumMajority: {b1: true, b2: false}, QuorumAny: {b1: true, b2: true}, QuorumAll: {b1: false, b2: false},
			},
		},
		{
			name:  "a backend only another node probes is decided by it",
			local: "a",
			views: map[string]NodeView{"a": view(b1, true), "b": view(b1, true, b2, true)},
			live:  []string{"a", "b"},
			want:  map[Quorum]want{QuorumMajority: {b1: true, b2: true}, QuorumAll: {b1: true, b2: true}},
		},
		{
			name:  "a node with another config digest is not merged",
			local: "a",
			views: map[string]NodeView{
				"a": view(b1, true, b2, false),
				"b": viewUnder("d2", b1, false, b2, true),
				"c": viewUnder("d2", b1, false, b2, true, key("other/198.18.0.13"), true),
			},
			live: abc,
			want: map[Quorum]want{
				QuorumMajority: {b1: true, b2: false}, QuorumAny: {b1: true, b2: false}, QuorumAll: {b1: true, b2: false},
			},
		},
		{
			name:  "the local node's digest decides who counts",
			local: "b",
			views: map[string]NodeView{
				"a": view(b1, true),
				"b": viewUnder("d2", b1, false),
				"c": viewUnder("d2", b1, false),
			},
			live: abc,
			want: map[Quorum]want{QuorumAny: {b1: false}},
		},
		{
			name:  "dead nodes drop out of the quorum",
			local: "a",
			// c and d are not live: only a and b vote, 1 of 2 up
			views: map[string]NodeView{"a": view(b1, true), "b": view(b1, false), "c": view(b1, true), "d": view(b1, true)},
			live:  []string{"a", "b"},
			want:  map[Quorum]want{QuorumMajority: {b1: false}, QuorumAny: {b1: true}},
		},
		{
			name:  "a live node without a view yet does not vote",
			local: "a",
			views: map[string]NodeView{"a": view(b1, true)},
			live:  abc,
			want:  map[Quorum]want{QuorumMajority: {b1: true}, QuorumAll: {b1: true}},
		},
		{
			name:  "duplicates in live count once",
			local: "a",
			views: map[string]NodeView{"a": view(b1, true), "b": view(b1, false), "c": view(b1, false)},
			live:  []string{"a", "a", "a", "b"},
			want:  map[Quorum]want{QuorumMajority: {b1: false}},
		},
		{
			name:  "empty views give an empty verdict",
			local: "a",
			views: map[string]NodeView{"a": view(), "b": view()},
			live:  []string{"a", "b"},
			want:  map[Quorum]want{QuorumMajority: {}, QuorumAny: {}, QuorumAll: {}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for q, want := range tt.want {
				got := Decide(tt.local, tt.views, tt.live, q)
				if !maps.Equal(got, want) {
					t.Errorf("quorum %q: Decide = %v, want %v", q, got, want)
				}
			}
		})
	}
}

func TestDecideMajorityThresholds(t *testing.T) {
	// up of n probing nodes: majority is strictly more than half
	k := key("k/198.18.0.1")
	for n := 1; n <= 7; n++ {
		for up := 0; up <= n; up++ {
			views := map[string]NodeView{}
			var live []string
			for i := range n {
				name := string(rune('a' + i))
				views[name] = view(k, i < up)
				live = append(live, name)
			}
			got := Decide("a", views, live, QuorumMajority)[k]
			if want := 2*up > n; got != want {
				t.Errorf("%d of %d up: majority = %v, want %v", up, n, got, want)
			}
		}
	}
}

// The quorum names config accepts are the ones New takes; "" is majority and anything else
// is refused.
func TestQuorums(t *testing.T) {
	for in, want := range map[string]Quorum{"": QuorumMajority, "majority": QuorumMajority, "any": QuorumAny, "all": QuorumAll} {
		if in != "" && !slices.Contains(Quorums(), Quorum(in)) {
			t.Errorf("Quorums() = %q lacks %q", Quorums(), in)
		}
		if got := startNode(t, "q-"+in, withQuorum(Quorum(in))).Status().Quorum; got != want {
			t.Errorf("New with quorum %q: %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{"most", "Majority", "2"} {
		if slices.Contains(Quorums(), Quorum(in)) {
			t.Errorf("Quorums() = %q has %q", Quorums(), in)
		}
		o := Options{NodeName: "a", Bind: netip.MustParseAddrPort("127.0.0.1:0"), SecretKey: testKey, Quorum: Quorum(in)}
		if c, err := New(o); !errors.Is(err, ErrBadQuorum) {
			if err == nil {
				_ = c.Shutdown()
			}
			t.Errorf("New with quorum %q: %v, want ErrBadQuorum", in, err)
		}
	}
}

// BenchmarkDecide: 10,000 backends probed by 5 nodes, the scale.
func BenchmarkDecide(b *testing.B) {
	views := map[string]NodeView{}
	var live []string
	for n := range 5 {
		name := string(rune('a' + n))
		v := NodeView{ConfigDigest: "d1", Backends: map[BackendKey]bool{}}
		for i := range 10000 {
			v.Backends[key(fmt.Sprintf("vip%d/198.18.%d.%d", i%100, i/250, i%250))] = (i+n)%7 != 0
		}
		views[name] = v
		live = append(live, name)
	}
	b.ResetTimer()
	for b.Loop() {
		Decide("a", views, live, QuorumMajority)
	}
}
