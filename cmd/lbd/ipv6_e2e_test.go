package main

import (
	"context"
	"testing"
	"time"
)

const v6Config = `node:
  interface: eth0
vips:
  - name: web6
    address: 2001:db8:1::10
    port: 80
    protocol: tcp
    backends:
      - address: 2001:db8::11
      - address: 2001:db8::12
      - address: 2001:db8::13
    health:
      type: http
      path: /
`

// TestEndToEndIPv6: 6in6 from the LB, decap and VIP restore on the backends, over real TCP.
func TestEndToEndIPv6(t *testing.T) {
	s := mustSandbox(t, []byte(v6Config), 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 150
	tl := s.Requests(ctx, n, 6)
	if tl.Failures != 0 {
		t.Fatalf("%d of %d requests failed: %v", tl.Failures, n, tl.Errors)
	}
	for _, h := range s.fleet.Backends {
		if tl.By[h.Name] < n/5 {
			t.Errorf("backend %s served %d of %d: %v", h.Name, tl.By[h.Name], n, tl.By)
		}
	}
	var restored uint64
	for i := range s.fleet.Backends {
		bs, err := s.BackendHostStats(i)
		if err != nil {
			t.Fatal(err)
		}
		restored += bs.Counters["restored"].Packets
	}
	st, err := s.LBStatus(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Verdicts["tx"].Packets < 3*n || restored < 3*n {
		t.Errorf("LB sent %d packets, backends restored %d replies: want >= %d each", st.Verdicts["tx"].Packets, restored, 3*n)
	}
	for _, b := range st.VIPs[0].Backends {
		if b.State != "active" || b.Probe != "up" {
			t.Errorf("backend %s: state %s, probe %s", b.Address, b.State, b.Probe)
		}
	}
}
