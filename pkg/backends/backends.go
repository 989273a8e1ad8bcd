// Package backends turns a VIP's configured backends and their health into what the data
// path serves: the ring's members, the drained backends that keep their flows, and the
// down ones whose flows move at once. It also finds each backend's next hop.
package backends

import (
	"net/netip"

	"github.com/lbdproj/lbd/pkg/consistenthash"
)

// State is a backend's place in its VIP.
type State int

const (
	// Active backends are in the ring and take new flows.
	Active State = iota
	// Draining backends (weight 0) take no new flows; established ones stay.
	Draining
	// Down backends (failed health checks) lose their flows at once.
	Down
)

func (s State) String() string {
	switch s {
	case Active:
		return "active"
	case Draining:
		return "draining"
	default:
		return "down"
	}
}

// Backend is one configured backend of a VIP with its health verdict.
type Backend struct {
	Addr    netip.Addr
	Weight  uint32
	Healthy bool
}

// StateOf says how the data path treats b.
func StateOf(b Backend) State {
	switch {
	case !b.Healthy:
		return Down
	case b.Weight == 0:
		return Draining
	default:
		return Active
	}
}

// Ring builds the VIP's table over its active backends: ring[slot] indexes bs. An empty
// ring (no active backend) is not an error here: the VIP then drops its traffic and
// counts it as having no backend.
func Ring(alg consistenthash.Algorithm, bs []Backend, size uint32) ([]uint32, error) {
	var members []consistenthash.Member
	var index []int
	for i, b := range bs {
		if StateOf(b) == Active {
			members = append(members, consistenthash.Member{Key: RingKey(b.Addr), Weight: b.Weight})
			index = append(index, i)
		}
	}
	if len(members) == 0 {
		return nil, nil
	}
	table, err := consistenthash.Build(alg, members, size)
	if err != nil {
		return nil, err
	}
	for i, m := range table {
		table[i] = uint32(index[m])
	}
	return table, nil
}

// RingKey is a backend's identity in its VIP's ring. Every LB node must key a backend alike
// to build the same ring, and lbd plan must too, to describe it.
func RingKey(addr netip.Addr) string { return addr.String() }

// Shares counts the slots each backend owns in ring, by address, for status and plans.
func Shares(bs []Backend, ring []uint32) map[netip.Addr]int {
	out := map[netip.Addr]int{}
	for _, i := range ring {
		out[bs[i].Addr]++
	}
	return out
}
