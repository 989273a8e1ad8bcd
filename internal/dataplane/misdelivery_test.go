package dataplane

import (
	"net"
	"net/netip"
	"testing"
)

// loopbackConn is one real TCP connection on loopback: the backend's socket lookup must
// find it (its packets are delivered) and must not find a flow of another client port
// (those are misdelivered, whatever the listener says).
type loopbackConn struct {
	local, remote    netip.AddrPort // the server's side, the client's side
	closedPort       uint16         // a port nothing listens on any more
	ln               net.Listener
	client, accepted net.Conn
}

func openLoopback(t *testing.T, network, addr string) *loopbackConn {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	client, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { accepted.Close() })
	gone, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	closed := gone.Addr().(*net.TCPAddr).AddrPort().Port()
	gone.Close()
	return &loopbackConn{
		local:      accepted.LocalAddr().(*net.TCPAddr).AddrPort(),
		remote:     accepted.RemoteAddr().(*net.TCPAddr).AddrPort(),
		closedPort: closed, ln: ln, client: client, accepted: accepted,
	}
}

func TestMisdeliveryCountsPacketsWithoutSocket(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		name    string
		network string
		addr    string
		vip     netip.Addr
	}{
		{"ipv4", "tcp4", "127.0.0.1:0", vip},
		{"ipv6", "tcp6", "[::1]:0", vip6},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := openLoopback(t, c.network, c.addr)
			// the tunnel's outer destination is this host's loopback address, which decap
			// makes the inner destination: the flow is the loopback connection's
			self := conn.local.Addr().Unmap()
			b := mustLoadBackendHost(t, netip.Addr{}, netip.Addr{})
			port := conn.local.Port()
			send := func(sport, dport uint16, p l4) {
				t.Helper()
				p.sport, p.dport = sport, dport
				in := encapsulated(t, self, l3(packet(t, conn.remote.Addr().Unmap(), c.vip, p)), self.Is4(), false)
				if ret, _ := run(t, b.objs.XdpDecap, in); ret != xdpPass {
					t.Fatalf("decap verdict %d, want XDP_PASS", ret)
				}
			}
			client := conn.remote.Port()
			stranger := client + 1 // a client port with no connection
			if stranger == 0 {
				stranger = client - 1
			}
			ack := tcp(0, 0, false, true)
			send(client, port, ack)                    // the established connection: delivered
			send(client, port, tcp(0, 0, true, false)) // a SYN is never counted
			send(stranger, port, tcp(0, 0, true, false))
			send(stranger, port, ack)                     // only the listener: misdelivered
			send(client, conn.closedPort, ack)            // nothing listens: misdelivered
			send(client, port, udp(0, 0))                 // not TCP
			send(stranger, port, tcp(0, 0, false, false)) // any segment but a SYN counts

			got, err := b.Misdelivered()
			if err != nil {
				t.Fatal(err)
			}
			want := map[VIPKey]uint64{
				{Addr: c.vip, Port: port, Proto: 6}:            2,
				{Addr: c.vip, Port: conn.closedPort, Proto: 6}: 1,
			}
			if len(got) != len(want) {
				t.Errorf("misdelivered %v, want %v", got, want)
			}
			for k, n := range want {
				if got[k].Packets != n || got[k].Bytes == 0 {
					t.Errorf("%s: %+v, want %d packets", k, got[k], n)
				}
			}
			st, err := b.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Counters["decap"].Packets != 7 {
				t.Errorf("decap counted %d, want every one of 7 packets", st.Counters["decap"].Packets)
			}
		})
	}
}
