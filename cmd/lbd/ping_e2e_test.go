package main

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// TestPingVIP: operators ping VIPs; the LB node answers for them.
func TestPingVIP(t *testing.T) {
	s := mustSandbox(t, configs.Demo, 1, 3)
	conn, err := s.fleet.Client.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for seq := 1; seq <= 3; seq++ {
		req := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: os.Getpid() & 0xffff, Seq: seq, Data: []byte("lbd")}}
		b, err := req.Marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: s.vip.AsSlice()}); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no echo reply from the VIP for seq %d: %v", seq, err)
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.Seq == seq && from.String() == s.vip.String() {
				break
			}
		}
	}
}
