package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/internal/testbed"
)

// TestBackendRefusesTunnelFromOutsideLBs: GUE is plain UDP to port 6080, so anyone who can
// reach a backend could hand it a packet "from" any source for any VIP and make it answer
// from the VIP. A backend running `lbd backend --lb-sources …` decapsulates only what its LB
// nodes send: the same datagram from the client is dropped and counted, from the LB node it
// is taken (and the backend's SYN-ACK leaves with the VIP restored).
func TestBackendRefusesTunnelFromOutsideLBs(t *testing.T) {
	s := mustSandbox(t, configs.Demo, 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	be := s.fleet.Backends[0]

	// a TCP SYN from the client to the VIP, as the payload of a GUE datagram
	inner := synTo(t, s.fleet.Client.Addr, s.vip, 40999, s.vipPort)
	send := func(from *testbed.Host) {
		t.Helper()
		c, err := from.Dialer().DialContext(ctx, "udp", netip.AddrPortFrom(be.Addr, dataplane.GUEPort).String())
		if err != nil {
			t.Fatalf("dial from %s: %v", from.Name, err)
		}
		defer c.Close()
		if _, err := c.Write(inner); err != nil {
			t.Fatalf("send from %s: %v", from.Name, err)
		}
	}
	counters := func() dataplane.BackendHostStats {
		t.Helper()
		st, err := s.BackendHostStats(0)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	waitFor := func(what string, cond func(dataplane.BackendHostStats) bool) dataplane.BackendHostStats {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			st := counters()
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: backend counters %v", what, st.Counters)
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	before := counters()
	send(s.fleet.Client)
	st := waitFor("refused from the client", func(st dataplane.BackendHostStats) bool {
		return st.Counters["refused_source"].Packets == before.Counters["refused_source"].Packets+1
	})
	if st.Counters["decap"].Packets != before.Counters["decap"].Packets ||
		st.Counters["restored"].Packets != before.Counters["restored"].Packets {
		t.Fatalf("a GUE packet from outside the LB sources was taken: before %v, after %v", before.Counters, st.Counters)
	}
	t.Logf("from the client (%s): dropped, refused_source %d → %d", s.fleet.Client.Addr,
		before.Counters["refused_source"].Packets, st.Counters["refused_source"].Packets)

	// the control: the same bytes from the LB node are decapsulated and answered
	send(s.fleet.LBs[0])
	st2 := waitFor("taken from the LB node", func(x dataplane.BackendHostStats) bool {
		// decap may grow by two: the client answers the unexpected SYN-ACK with a RST,
		// which the LB node forwards to the backend like any packet of the flow
		return x.Counters["decap"].Packets > st.Counters["decap"].Packets &&
			x.Counters["restored"].Packets > st.Counters["restored"].Packets
	})
	if st2.Counters["refused_source"].Packets != st.Counters["refused_source"].Packets {
		t.Fatalf("the LB node's packet was refused: %v", st2.Counters)
	}
	t.Logf("from the LB node (%s): decapsulated, and the SYN-ACK left from the VIP (restored %d → %d)",
		s.fleet.LBs[0].Addr, st.Counters["restored"].Packets, st2.Counters["restored"].Packets)
}

// synTo is an IPv4 TCP SYN from src:sport to dst:dport, checksums computed.
func synTo(t *testing.T, src, dst netip.Addr, sport, dport uint16) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Seq: 1, Window: 64240}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp); err != nil {
		t.Fatal(fmt.Errorf("serialize: %w", err))
	}
	return buf.Bytes()
}
