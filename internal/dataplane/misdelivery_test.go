package dataplane

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/wait"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// loopbackConn is one real TCP connection over lo: the backend's socket lookup must find it
// (its packets are delivered) and must not find a flow of another client port (those are
// misdelivered, whatever the listener says).
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

// TestMisdeliveryCountsPacketsWithoutSocket runs in a network namespace of its own, where
// this host's address (on lo) holds one real TCP connection: decap's socket lookup finds
// it, and no socket (or only the listener) for the flows the test makes up.
func TestMisdeliveryCountsPacketsWithoutSocket(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		name    string
		network string
		self    netip.Addr // this backend's address, the tunnel's outer destination
		vip     netip.Addr
	}{
		{"ipv4", "tcp4", netip.MustParseAddr("198.18.0.5"), vip},
		{"ipv6", "tcp6", netip.MustParseAddr("2001:db8::5"), vip6},
	} {
		t.Run(c.name, func(t *testing.T) {
			inNewNetns(t, func() {
				lo := upLoopback(t)
				addr := &netlink.Addr{IPNet: &net.IPNet{IP: c.self.AsSlice(), Mask: net.CIDRMask(c.self.BitLen(), c.self.BitLen())},
					Flags: unix.IFA_F_NODAD}
				if err := netlink.AddrAdd(lo, addr); err != nil {
					t.Fatal(err)
				}
				waitLocal(t, c.self)
				conn := openLoopback(t, c.network, netip.AddrPortFrom(c.self, 0).String())
				checkMisdelivery(t, conn, c.self, c.vip)
			})
		})
	}
}

// waitLocal waits until the kernel delivers to a, an address just added, locally. IPv6
// installs an address's local route from a work queue, after the address is usable for
// bind() and its prefix route exists: a connect() before it sends its SYN out of lo to no
// local address and fails, a second later, with "network is unreachable" (seen on a busy
// machine, 2 of 300 runs).
func waitLocal(t *testing.T, a netip.Addr) {
	t.Helper()
	err := wait.Until(5*time.Second, 10*time.Millisecond, func() (bool, error) {
		rs, err := netlink.RouteGet(a.AsSlice())
		return err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL, nil
	})
	if err != nil {
		t.Fatalf("no route to %s, an address of this namespace: %v", a, err)
	}
}

// checkMisdelivery sends tunnelled packets for the connection conn and for flows without a
// socket through xdp_decap, from the namespace that holds conn.
func checkMisdelivery(t *testing.T, conn *loopbackConn, self, vipAddr netip.Addr) {
	b := mustLoadBackendHost(t, netip.Addr{}, netip.Addr{})
	port := conn.local.Port()
	send := func(sport, dport uint16, p l4) {
		t.Helper()
		p.sport, p.dport = sport, dport
		in := encapsulated(t, self, l3(packet(t, conn.remote.Addr().Unmap(), vipAddr, p)), self.Is4(), false)
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
		{Addr: vipAddr, Port: port, Proto: 6}:            2,
		{Addr: vipAddr, Port: conn.closedPort, Proto: 6}: 1,
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
}
