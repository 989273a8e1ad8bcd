package main

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
)

// flowSyncBench is a second xdp_lb serving the same VIP whose adopted-flow maps hold 1000
// flows no packet here belongs to, plus one adopted flow for each packet of the hit
// scenario. Its scenarios: a miss of a flow that is not adopted (the miss path with the
// adopted lookup's guards in it, beside the plain miss on an LB that adopted nothing), and
// a miss that finds its backend among the adopted flows (the flow then enters the table).
type flowSyncBench struct {
	lb              *dataplane.LB
	missTpl, hitTpl []byte
	missN, hitN     uint32
}

func newFlowSyncBench(backends, hits int) (*flowSyncBench, error) {
	if hits+1000 > dataplane.MaxAdoptedFlows {
		return nil, fmt.Errorf("%d adopted flows: the map holds %d (fewer rounds or packets)", hits+1000, dataplane.MaxAdoptedFlows)
	}
	lb, err := dataplane.LoadDetached(dataplane.Config{HashSeed: 0x6c62640a, EncapSource: netip.MustParseAddr("198.18.0.2"), MTU: 1600})
	if err != nil {
		return nil, err
	}
	if err := applyVIP(lb, backends); err != nil {
		lb.Close()
		return nil, err
	}
	key := dataplane.VIPKey{Addr: vip, Port: 80, Proto: 6}
	backend := netip.AddrFrom4([4]byte{198, 18, 0, 11})
	var adopted []dataplane.SharedFlow
	for i := range 1000 {
		src := netip.AddrFrom4([4]byte{198, 20, byte(i >> 8), byte(i)})
		adopted = append(adopted, dataplane.SharedFlow{Flow: dataplane.Flow{Src: src, Dst: vip, SrcPort: 40000, DstPort: 80, Proto: 6}, VIP: key, Backend: backend})
	}
	for i := range hits {
		src := netip.AddrFrom4([4]byte{198, 21, byte(i >> 8), byte(i)})
		adopted = append(adopted, dataplane.SharedFlow{Flow: dataplane.Flow{Src: src, Dst: vip, SrcPort: 40000 + uint16(i>>16), DstPort: 80, Proto: 6}, VIP: key, Backend: backend})
	}
	a, _, err := lb.OpenAdopted()
	if err == nil {
		var un []dataplane.SharedFlow
		if un, err = a.Put(adopted); err == nil && len(un) > 0 {
			err = fmt.Errorf("%d unresolved", len(un))
		}
	}
	if err != nil {
		lb.Close()
		return nil, fmt.Errorf("adopt: %w", err)
	}
	return &flowSyncBench{lb: lb, missTpl: frame(client, vip, 1, false, true), hitTpl: frame(client, vip, 40000, false, true)}, nil
}

// miss measures a new flow that is not adopted: a new source address and port for every
// packet, as in the plain miss scenario.
func (b *flowSyncBench) miss() (uint32, time.Duration, error) {
	b.missN++
	f := b.missTpl
	f[14+12+2], f[14+12+3] = byte(b.missN>>16), byte(b.missN>>8)
	f[14+20], f[14+20+1] = byte(b.missN), byte(b.missN>>24)|0x80
	return b.lb.Measure(f)
}

// hit measures the next adopted flow.
func (b *flowSyncBench) hit() (uint32, time.Duration, error) {
	f := b.hitTpl
	f[14+12], f[14+12+1], f[14+12+2], f[14+12+3] = 198, 21, byte(b.hitN>>8), byte(b.hitN)
	port := 40000 + uint16(b.hitN>>16)
	f[14+20], f[14+20+1] = byte(port>>8), byte(port)
	b.hitN++
	return b.lb.Measure(f)
}
