// Package plan tells, before a configuration change, what it does to each VIP's ring: which
// backends come, go or change weight, and the fraction of flows that would move to another
// backend. It builds the real rings (consistenthash.Build) and changes nothing; `lbd plan` prints
// its Report.
package plan

import (
	"cmp"
	"fmt"
	"io"
	"slices"

	"github.com/lbdproj/lbd/pkg/consistenthash"
)

// VIPSpec is what plan needs of one VIP: its ring's inputs. An empty Algorithm means
// consistenthash.DefaultAlgorithm, a zero Size consistenthash.DefaultSize.
type VIPSpec struct {
	Name      string
	Algorithm consistenthash.Algorithm
	Size      uint32
	Members   []consistenthash.Member
}

// Report is the effect of a change, one entry per VIP in either configuration, by name.
type Report struct {
	VIPs []VIPReport `json:"vips"`
}

// Change says what happened to a VIP as a whole.
type Change string

const (
	Added     Change = "added"     // only in the new configuration
	Removed   Change = "removed"   // only in the old one
	Changed   Change = "changed"   // in both, and its ring inputs differ
	Unchanged Change = "unchanged" // in both, same ring inputs
)

// VIPReport is the effect of a change on one VIP.
//
// MovedFraction is the fraction of the VIP's flows whose backend changes: slots whose owner
// changes, over the ring size. A removed VIP moves all its flows (1), an added one none (0).
// When the two rings have different sizes a flow's slot changes too; the fraction is then
// measured over 2^20 flow hashes spread evenly over the 32-bit hash space. If a ring cannot be
// built, Error says why and MovedFraction is 0.
type VIPReport struct {
	Name          string                   `json:"name"`
	Change        Change                   `json:"change"`
	OldAlgorithm  consistenthash.Algorithm `json:"old_algorithm,omitempty"`
	NewAlgorithm  consistenthash.Algorithm `json:"new_algorithm,omitempty"`
	OldSize       uint32                   `json:"old_size,omitempty"`
	NewSize       uint32                   `json:"new_size,omitempty"`
	Added         []Backend                `json:"added"`
	Removed       []Backend                `json:"removed"`
	Reweighted    []Reweight               `json:"reweighted"`
	MovedFraction float64                  `json:"moved_fraction"`
	Error         string                   `json:"error,omitempty"`
}

// Backend is a backend added or removed, by its ring key.
type Backend struct {
	Key    string `json:"key"`
	Weight uint32 `json:"weight"`
}

// Reweight is a backend in both configurations whose weight changes (0 = draining).
type Reweight struct {
	Key       string `json:"key"`
	OldWeight uint32 `json:"old_weight"`
	NewWeight uint32 `json:"new_weight"`
}

// Diff compares two configurations' VIPs. It is pure: it only builds rings in memory.
func Diff(old, new []VIPSpec) Report {
	byName := func(vs []VIPSpec) map[string]VIPSpec {
		m := make(map[string]VIPSpec, len(vs))
		for _, v := range vs {
			m[v.Name] = withDefaults(v)
		}
		return m
	}
	o, n := byName(old), byName(new)
	names := make([]string, 0, len(o)+len(n))
	for name := range o {
		names = append(names, name)
	}
	for name := range n {
		if _, ok := o[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)

	rep := Report{VIPs: make([]VIPReport, 0, len(names))}
	for _, name := range names {
		ov, inOld := o[name]
		nv, inNew := n[name]
		switch {
		case !inNew:
			rep.VIPs = append(rep.VIPs, vipGone(ov))
		case !inOld:
			rep.VIPs = append(rep.VIPs, vipNew(nv))
		default:
			rep.VIPs = append(rep.VIPs, diffVIP(ov, nv))
		}
	}
	return rep
}

func withDefaults(v VIPSpec) VIPSpec {
	v.Algorithm = v.Algorithm.OrDefault()
	if v.Size == 0 {
		v.Size = consistenthash.DefaultSize
	}
	return v
}

func backends(ms []consistenthash.Member) []Backend {
	out := make([]Backend, len(ms))
	for i, m := range ms {
		out[i] = Backend{Key: m.Key, Weight: m.Weight}
	}
	slices.SortFunc(out, func(a, b Backend) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

func vipGone(v VIPSpec) VIPReport {
	return VIPReport{Name: v.Name, Change: Removed, OldAlgorithm: v.Algorithm, OldSize: v.Size,
		Added: []Backend{}, Removed: backends(v.Members), Reweighted: []Reweight{}, MovedFraction: 1}
}

func vipNew(v VIPSpec) VIPReport {
	r := VIPReport{Name: v.Name, Change: Added, NewAlgorithm: v.Algorithm, NewSize: v.Size,
		Added: backends(v.Members), Removed: []Backend{}, Reweighted: []Reweight{}}
	if _, err := consistenthash.Build(v.Algorithm, v.Members, v.Size); err != nil {
		r.Error = fmt.Sprintf("new ring: %v", err)
	}
	return r
}

func diffVIP(ov, nv VIPSpec) VIPReport {
	r := VIPReport{Name: ov.Name, Change: Unchanged,
		OldAlgorithm: ov.Algorithm, NewAlgorithm: nv.Algorithm, OldSize: ov.Size, NewSize: nv.Size,
		Added: []Backend{}, Removed: []Backend{}, Reweighted: []Reweight{}}
	oldW := make(map[string]uint32, len(ov.Members))
	for _, m := range ov.Members {
		oldW[m.Key] = m.Weight
	}
	newW := make(map[string]uint32, len(nv.Members))
	for _, m := range nv.Members {
		newW[m.Key] = m.Weight
		if w, ok := oldW[m.Key]; !ok {
			r.Added = append(r.Added, Backend{Key: m.Key, Weight: m.Weight})
		} else if w != m.Weight {
			r.Reweighted = append(r.Reweighted, Reweight{Key: m.Key, OldWeight: w, NewWeight: m.Weight})
		}
	}
	for _, m := range ov.Members {
		if _, ok := newW[m.Key]; !ok {
			r.Removed = append(r.Removed, Backend{Key: m.Key, Weight: m.Weight})
		}
	}
	slices.SortFunc(r.Added, func(a, b Backend) int { return cmp.Compare(a.Key, b.Key) })
	slices.SortFunc(r.Removed, func(a, b Backend) int { return cmp.Compare(a.Key, b.Key) })
	slices.SortFunc(r.Reweighted, func(a, b Reweight) int { return cmp.Compare(a.Key, b.Key) })
	if len(r.Added)+len(r.Removed)+len(r.Reweighted) > 0 || ov.Algorithm != nv.Algorithm || ov.Size != nv.Size {
		r.Change = Changed
	}

	ot, err := consistenthash.Build(ov.Algorithm, ov.Members, ov.Size)
	if err != nil {
		r.Error = fmt.Sprintf("old ring: %v", err)
		return r
	}
	nt, err := consistenthash.Build(nv.Algorithm, nv.Members, nv.Size)
	if err != nil {
		r.Error = fmt.Sprintf("new ring: %v", err)
		return r
	}
	r.MovedFraction = movedFraction(ov.Members, ot, nv.Members, nt)
	return r
}

// flowSamples is how many flow hashes movedFraction tries when the ring sizes differ.
const flowSamples = 1 << 20

// movedFraction is the fraction of flows whose owner key differs between the two rings. The data
// path picks slot hash % len(table).
func movedFraction(om []consistenthash.Member, ot []uint32, nm []consistenthash.Member, nt []uint32) float64 {
	if len(ot) == len(nt) {
		var n int
		for i := range ot {
			if om[ot[i]].Key != nm[nt[i]].Key {
				n++
			}
		}
		return float64(n) / float64(len(ot))
	}
	const stride = (1 << 32) / flowSamples
	var n int
	for i := uint64(0); i < flowSamples; i++ {
		h := i*stride + stride/2
		if om[ot[h%uint64(len(ot))]].Key != nm[nt[h%uint64(len(nt))]].Key {
			n++
		}
	}
	return float64(n) / flowSamples
}

// WriteText prints the report for people, one block per VIP.
func (r Report) WriteText(w io.Writer) error {
	for _, v := range r.VIPs {
		var err error
		switch v.Change {
		case Removed:
			_, err = fmt.Fprintf(w, "vip %s: removed, all its flows are lost (%d backends)\n", v.Name, len(v.Removed))
		case Added:
			_, err = fmt.Fprintf(w, "vip %s: added (%s, %d slots, %d backends)\n", v.Name, v.NewAlgorithm, v.NewSize, len(v.Added))
		case Unchanged:
			_, err = fmt.Fprintf(w, "vip %s: unchanged\n", v.Name)
		default:
			_, err = fmt.Fprintf(w, "vip %s: %.2f%% of flows move to another backend\n", v.Name, 100*v.MovedFraction)
			if err == nil && v.OldAlgorithm != v.NewAlgorithm {
				_, err = fmt.Fprintf(w, "  algorithm %s -> %s\n", v.OldAlgorithm, v.NewAlgorithm)
			}
			if err == nil && v.OldSize != v.NewSize {
				_, err = fmt.Fprintf(w, "  ring size %d -> %d\n", v.OldSize, v.NewSize)
			}
			for _, b := range v.Removed {
				if err == nil {
					_, err = fmt.Fprintf(w, "  - %s (weight %d)\n", b.Key, b.Weight)
				}
			}
			for _, b := range v.Added {
				if err == nil {
					_, err = fmt.Fprintf(w, "  + %s (weight %d)\n", b.Key, b.Weight)
				}
			}
			for _, b := range v.Reweighted {
				if err == nil {
					_, err = fmt.Fprintf(w, "  ~ %s weight %d -> %d\n", b.Key, b.OldWeight, b.NewWeight)
				}
			}
		}
		if err == nil && v.Error != "" {
			_, err = fmt.Fprintf(w, "  error: %s\n", v.Error)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
