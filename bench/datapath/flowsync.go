package main

import (
	"fmt"
	"net/netip"

	"github.com/lbdproj/lbd/internal/dataplane"
)

// flowSyncScenarios loads a second xdp_lb serving the same VIP whose adopted-flow maps hold
// 1000 flows no packet here belongs to, plus one adopted flow for each of hits packets.
// miss returns a frame of a new flow that is not adopted (the miss path with the adopted
// lookup in it); hit returns a frame of a new flow that is (the lookup finds it, and the
// flow enters the flow table).
func flowSyncScenarios(backends, hits int) (lb *dataplane.LB, miss, hit func() []byte, err error) {
	if hits+1000 > dataplane.MaxAdoptedFlows {
		return nil, nil, nil, fmt.Errorf("%d adopted flows: the map holds %d (fewer rounds or packets)", hits+1000, dataplane.MaxAdoptedFlows)
	}
	lb, err = dataplane.LoadDetached(dataplane.Config{HashSeed: 0x6c62640a, EncapSource: netip.MustParseAddr("198.18.0.2"), MTU: 1600})
	if err != nil {
		return nil, nil, nil, err
	}
	if err := applyVIP(lb, backends); err != nil {
		lb.Close()
		return nil, nil, nil, err
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
	if un, err := lb.PutAdopted(adopted); err != nil || len(un) > 0 {
		lb.Close()
		return nil, nil, nil, fmt.Errorf("adopt: %v (%d unresolved)", err, len(un))
	}
	if err := lb.SetAdoptedCounts(len(adopted), 0); err != nil {
		lb.Close()
		return nil, nil, nil, err
	}
	missTpl, hitTpl := frame(client, vip, 1, false, true), frame(client, vip, 40000, false, true)
	var missN, hitN uint32
	miss = func() []byte {
		missN++ // a new source address and port for every packet, as the plain miss scenario
		f := missTpl
		f[14+12+2], f[14+12+3] = byte(missN>>16), byte(missN>>8)
		f[14+20], f[14+20+1] = byte(missN), byte(missN>>24)|0x80
		return f
	}
	hit = func() []byte {
		f := hitTpl
		f[14+12], f[14+12+1], f[14+12+2], f[14+12+3] = 198, 21, byte(hitN>>8), byte(hitN)
		f[14+20], f[14+20+1] = byte((40000+hitN>>16)>>8), byte(40000+hitN>>16)
		hitN++
		return f
	}
	return lb, miss, hit, nil
}
