package plan

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lbdproj/lbd/pkg/consistenthash"
)

func pool(n int) []consistenthash.Member {
	ms := make([]consistenthash.Member, n)
	for i := range ms {
		ms[i] = consistenthash.Member{Key: fmt.Sprintf("198.18.1.%d:80", i+1), Weight: 1}
	}
	return ms
}

func without(ms []consistenthash.Member, i int) []consistenthash.Member {
	return append(append([]consistenthash.Member(nil), ms[:i]...), ms[i+1:]...)
}

func one(t *testing.T, r Report, name string) VIPReport {
	t.Helper()
	for _, v := range r.VIPs {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no VIP %q in report", name)
	return VIPReport{}
}

// One backend of 100 removed: its 1% of flows move, plus the algorithm's collateral.
func TestRemoveOneOfHundred(t *testing.T) {
	for _, tc := range []struct {
		alg consistenthash.Algorithm
		max float64
	}{
		{"", 0.0145},                            // DefaultAlgorithm (Rendezvous): measured 1.29%
		{consistenthash.Maglev, 0.018},          // measured 1.53%
		{consistenthash.Rendezvous, 0.0145},     // measured 1.29%
		{consistenthash.RendezvousSlack, 0.013}, // measured 1.16%
	} {
		ms := pool(100)
		old := []VIPSpec{{Name: "web", Algorithm: tc.alg, Members: ms}}
		new := []VIPSpec{{Name: "web", Algorithm: tc.alg, Members: without(ms, 41)}}
		v := one(t, Diff(old, new), "web")
		if v.Change != Changed || v.Error != "" {
			t.Fatalf("%q: change %s, error %q", tc.alg, v.Change, v.Error)
		}
		if diff := cmp.Diff([]Backend{{Key: "198.18.1.42:80", Weight: 1}}, v.Removed); diff != "" {
			t.Errorf("%q removed (-want +got):\n%s", tc.alg, diff)
		}
		if len(v.Added)+len(v.Reweighted) != 0 {
			t.Errorf("%q: added %v, reweighted %v", tc.alg, v.Added, v.Reweighted)
		}
		if v.MovedFraction < 0.0099 || v.MovedFraction > tc.max {
			t.Errorf("%q: moved_fraction %.4f, want in [0.0099, %.3f]", tc.alg, v.MovedFraction, tc.max)
		}
	}
}

func TestDiffKinds(t *testing.T) {
	ms := pool(10)
	reweighted := append([]consistenthash.Member(nil), ms...)
	reweighted[3].Weight = 3
	reweighted[5].Weight = 0 // drain
	reweighted = append(reweighted, consistenthash.Member{Key: "198.18.1.99:80", Weight: 2})
	old := []VIPSpec{
		{Name: "same", Members: ms},
		{Name: "gone", Members: ms[:2]},
		{Name: "edit", Members: ms},
		{Name: "algo", Algorithm: consistenthash.Maglev, Members: ms},
		{Name: "size", Members: ms},
	}
	new := []VIPSpec{
		{Name: "edit", Members: reweighted},
		{Name: "same", Members: ms},
		{Name: "fresh", Size: 1009, Members: ms[:3]},
		{Name: "algo", Algorithm: consistenthash.Rendezvous, Members: ms},
		{Name: "size", Size: 1009, Members: ms},
	}
	r := Diff(old, new)
	var names []string
	for _, v := range r.VIPs {
		names = append(names, v.Name)
	}
	if diff := cmp.Diff([]string{"algo", "edit", "fresh", "gone", "same", "size"}, names); diff != "" {
		t.Errorf("VIPs (-want +got):\n%s", diff)
	}

	if v := one(t, r, "same"); v.Change != Unchanged || v.MovedFraction != 0 {
		t.Errorf("same: %s, moved %v", v.Change, v.MovedFraction)
	}
	if v := one(t, r, "gone"); v.Change != Removed || v.MovedFraction != 1 || len(v.Removed) != 2 {
		t.Errorf("gone: %+v", v)
	}
	if v := one(t, r, "fresh"); v.Change != Added || v.MovedFraction != 0 || len(v.Added) != 3 || v.NewSize != 1009 {
		t.Errorf("fresh: %+v", v)
	}

	v := one(t, r, "edit")
	want := []Reweight{{"198.18.1.4:80", 1, 3}, {"198.18.1.6:80", 1, 0}}
	if diff := cmp.Diff(want, v.Reweighted); diff != "" {
		t.Errorf("edit reweighted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Backend{{"198.18.1.99:80", 2}}, v.Added); diff != "" {
		t.Errorf("edit added (-want +got):\n%s", diff)
	}
	// Compute the expected fraction from the tables directly.
	ot, _ := consistenthash.Build(consistenthash.DefaultAlgorithm, ms, consistenthash.DefaultSize)
	nt, _ := consistenthash.Build(consistenthash.DefaultAlgorithm, reweighted, consistenthash.DefaultSize)
	var n int
	for i := range ot {
		if ms[ot[i]].Key != reweighted[nt[i]].Key {
			n++
		}
	}
	if got, want := v.MovedFraction, float64(n)/float64(len(ot)); got != want {
		t.Errorf("edit: moved_fraction %v, want %v", got, want)
	}
	// weight 1 → 3 and 1 → 0 and a new weight 2, out of 10: at least the weight shift moves.
	if v.MovedFraction < 0.25 || v.MovedFraction > 0.45 {
		t.Errorf("edit: moved_fraction %.3f, want about 0.3", v.MovedFraction)
	}

	// Another ring size: slots mean other flows, most flows move (about 1 - 1/N).
	if v := one(t, r, "size"); v.Change != Changed || v.MovedFraction < 0.8 || v.MovedFraction > 0.95 {
		t.Errorf("size: %s, moved %.3f, want about 0.9", v.Change, v.MovedFraction)
	}
	// Maglev and Rendezvous walk the same permutations: with 10 backends they nearly agree.
	if v := one(t, r, "algo"); v.Change != Changed || v.MovedFraction <= 0 || v.MovedFraction > 0.05 {
		t.Errorf("algo: %s, moved %.3f, want in (0, 0.05]", v.Change, v.MovedFraction)
	}
}

func TestBuildErrorReported(t *testing.T) {
	ms := pool(3)
	drained := []consistenthash.Member{{Key: ms[0].Key}, {Key: ms[1].Key}}
	r := Diff([]VIPSpec{{Name: "v", Members: ms}}, []VIPSpec{{Name: "v", Members: drained}})
	if v := one(t, r, "v"); !strings.Contains(v.Error, "weight 0") {
		t.Errorf("error %q, want the ring's reason", v.Error)
	}
}

func TestJSONShape(t *testing.T) {
	ms := pool(5)
	r := Diff([]VIPSpec{{Name: "web", Members: ms}}, []VIPSpec{{Name: "web", Members: ms[1:]}})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		VIPs []map[string]any `json:"vips"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.VIPs) != 1 {
		t.Fatalf("%s: want one VIP", b)
	}
	v := got.VIPs[0]
	if v["name"] != "web" || v["change"] != "changed" {
		t.Errorf("%s", b)
	}
	if f, ok := v["moved_fraction"].(float64); !ok || f < 0.2 {
		t.Errorf("moved_fraction in %s", b)
	}
	for _, k := range []string{"added", "removed", "reweighted"} {
		if _, ok := v[k].([]any); !ok {
			t.Errorf("%s is not a list in %s", k, b)
		}
	}
}

func TestWriteText(t *testing.T) {
	ms := pool(4)
	new := append(without(ms, 0), consistenthash.Member{Key: "198.18.1.9:80", Weight: 2})
	new[0].Weight = 5
	r := Diff([]VIPSpec{{Name: "web", Members: ms}, {Name: "old", Members: ms}},
		[]VIPSpec{{Name: "web", Members: new}, {Name: "api", Members: ms}})
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	v := one(t, r, "web")
	want := fmt.Sprintf(`vip api: added (%s, 65537 slots, 4 backends)
vip old: removed, all its flows are lost (4 backends)
vip web: %.2f%% of flows move to another backend
  - 198.18.1.1:80 (weight 1)
  + 198.18.1.9:80 (weight 2)
  ~ 198.18.1.2:80 weight 1 -> 5
`, consistenthash.DefaultAlgorithm, 100*v.MovedFraction)
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}
}
