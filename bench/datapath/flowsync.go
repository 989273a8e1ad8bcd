package main

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/lbdproj/lbd/internal/dataplane"
)

// addFlowSync adds the miss row on a second xdp_lb that serves the same VIP and holds 1000
// adopted flows (flow sync), none of them a packet's here: the miss path with the adopted
// lookup's guards in it, beside the plain miss on the bench's own xdp_lb, which holds none.
func (b *bench) addFlowSync() error {
	lb, err := dataplane.LoadDetached(lbConfig())
	if err != nil {
		return err
	}
	b.flowSync = lb
	if err := applyVIP(lb, *nBE); err != nil {
		return err
	}
	key := dataplane.VIPKey{Addr: vip, Port: 80, Proto: 6}
	backend := netip.AddrFrom4([4]byte{198, 18, 0, 11})
	var adopted []dataplane.SharedFlow
	for i := range 1000 {
		src := netip.AddrFrom4([4]byte{198, 20, byte(i >> 8), byte(i)})
		adopted = append(adopted, dataplane.SharedFlow{Flow: dataplane.Flow{Src: src, Dst: vip, SrcPort: 40000, DstPort: 80, Proto: 6},
			VIP: key, Backend: backend})
	}
	a, _, err := lb.OpenAdopted()
	if err != nil {
		return err
	}
	if un, err := a.Put(adopted); err != nil || len(un) > 0 {
		return fmt.Errorf("adopt: %v (%d unresolved)", err, len(un))
	}
	i := slices.IndexFunc(b.scenarios, func(s scenario) bool { return s.key == "miss" })
	if i < 0 {
		return fmt.Errorf("no miss scenario")
	}
	miss := b.scenarios[i]
	b.scenarios = append(b.scenarios, scenario{name: "lru miss, 1000 adopted flows", key: "adopted_miss", lb: true,
		prog: lb.XDPProgram(), frame: miss.frame, vary: true, want: 3, on: lb})
	return nil
}
