package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/wait"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The packets of a VIP flow that carry no ports of their own, end to end: a UDP datagram
// larger than the client's MTU arrives whole at one backend, and a path MTU that only a
// router on the direct-server-return path knows reaches the backend that must obey it.

const (
	edgeVIP4  = "198.18.0.10"
	edgeVIP6  = "2001:db8:1::10"
	bulkPort  = 8080
	dgramPort = 5300
	bulkSize  = 1 << 20 // bytes a backend sends on each connection to bulkPort
	dgramSize = 4000    // bytes of UDP payload the client sends
)

// edgeConfig: the sandbox's web VIP (its HTTP servers name the backend), a TCP VIP whose
// backends send 1 MB and close, and a UDP VIP whose backends say what they received; the
// last two in both families. The test bed numbers the two backends .11 and .12 (::11, ::12).
func edgeConfig() []byte {
	var b strings.Builder
	b.WriteString("node:\n  interface: eth0\nvips:\n")
	vipSection := func(name, addr string, port int, proto string, v6 bool, health string) {
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n    port: %d\n    protocol: %s\n    backends:\n", name, addr, port, proto)
		for _, a := range []string{"198.18.0.11", "198.18.0.12"} {
			if v6 {
				a = "2001:db8::" + strings.TrimPrefix(a, "198.18.0.")
			}
			fmt.Fprintf(&b, "      - address: %s\n", a)
		}
		fmt.Fprintf(&b, "    health:\n%s", health)
	}
	tcpHealth := "      type: tcp\n      interval: 200ms\n      timeout: 150ms\n"
	udpHealth := "      type: udp\n      payload: ping\n      interval: 200ms\n      timeout: 150ms\n"
	vipSection("web", edgeVIP4, 80, "tcp", false, tcpHealth)
	vipSection("bulk", edgeVIP4, bulkPort, "tcp", false, tcpHealth)
	vipSection("bulk6", edgeVIP6, bulkPort, "tcp", true, tcpHealth)
	vipSection("dgram", edgeVIP4, dgramPort, "udp", false, udpHealth)
	vipSection("dgram6", edgeVIP6, dgramPort, "udp", true, udpHealth)
	return []byte(b.String())
}

// dgramLog is what one backend's datagram service received: the SHA-256 of each datagram.
type dgramLog struct {
	mu   sync.Mutex
	seen map[string]int // hex digest → datagrams
}

// serveEdge starts, on every backend, the bulk service (bulkSize bytes of pattern per
// connection) and the datagram service (answers "NAME LEN SHA256HEX\n" and the datagram
// itself, which the backend's kernel sends in fragments), closed when the test ends.
func serveEdge(t *testing.T, s *sandbox) (map[string]*dgramLog, error) {
	logs := map[string]*dgramLog{}
	for _, h := range s.fleet.Backends {
		ln, err := h.Listen("tcp", fmt.Sprintf(":%d", bulkPort))
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_, _ = c.Write(bulkPayload())
				}()
			}
		}()
		pc, err := h.ListenPacket("udp", fmt.Sprintf(":%d", dgramPort))
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { pc.Close() })
		l := &dgramLog{seen: map[string]int{}}
		logs[h.Name] = l
		go func(name string) {
			buf := make([]byte, 65536)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				sum := sha256.Sum256(buf[:n])
				d := hex.EncodeToString(sum[:])
				l.mu.Lock()
				l.seen[d]++
				l.mu.Unlock()
				_, _ = pc.WriteTo(append([]byte(fmt.Sprintf("%s %d %s\n", name, n, d)), buf[:n]...), from)
			}
		}(h.Name)
	}
	return logs, nil
}

// bulkPayload is what the bulk service sends: bytes that say their offset modulo 251.
func bulkPayload() []byte {
	b := make([]byte, bulkSize)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// waitAllActive waits until every LB node has every backend of every VIP active.
func waitAllActive(ctx context.Context, t *testing.T, s *sandbox) {
	t.Helper()
	err := wait.Until(30*time.Second, 50*time.Millisecond, func() (bool, error) {
		for i := range s.fleet.LBs {
			st, err := s.LBStatus(ctx, i)
			if err != nil {
				return false, err
			}
			for _, v := range st.VIPs {
				for _, b := range v.Backends {
					if b.State != "active" {
						return false, fmt.Errorf("lb%d: %s backend %s is %s", i, v.Name, b.Address, b.State)
					}
				}
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestEdgePacketsEndToEnd: two LB nodes behind a router, two backends.
//   - A 4,000-byte UDP datagram to the UDP VIP leaves the client in three fragments; each
//     arrives at one backend, which receives the datagram whole and echoes it, in fragments
//     too, every one of them from the VIP. IPv4 and IPv6. (Over IPv6 the first echo is
//     lost: the backend's fragments fit its 1600-byte link, not the client's 1500-byte one,
//     and IPv6 routers do not fragment. The router's packet too big goes to the VIP, hence
//     to the backend as below, and the next echo fits.)
//   - The router's link toward the client is then cut to 1280 bytes while the client's own
//     stays at 1500, so the client asks for 1460-byte segments that only the router knows
//     cannot reach it. A backend sends 1 MB with DSR: the router's "fragmentation needed" /
//     "packet too big" goes to the VIP, hence to an LB node, which sends it to the flow's
//     backend; the backend lowers its path MTU and the transfer completes. With those
//     errors lost on their way (as before lbd forwarded them: the LB node's host dropped
//     them), the same transfer stalls. IPv4 and IPv6.
func TestEdgePacketsEndToEnd(t *testing.T) {
	var logs map[string]*dgramLog
	s := mustSandboxOpts(t, sandboxOptions{config: edgeConfig(), lbs: 2, backends: 2, router: true,
		beforeLB: func(s *sandbox) (err error) { logs, err = serveEdge(t, s); return err }})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waitAllActive(ctx, t, s)

	t.Run("a 4000-byte udp datagram arrives whole at one backend", func(t *testing.T) {
		for _, vip := range []string{edgeVIP4, edgeVIP6} {
			addr := netip.AddrPortFrom(netip.MustParseAddr(vip), dgramPort)
			name, digest := sendDatagram(ctx, t, s, addr)
			var whole []string
			for n, l := range logs {
				l.mu.Lock()
				if l.seen[digest] > 0 {
					whole = append(whole, n)
				}
				l.mu.Unlock()
			}
			if len(whole) != 1 || whole[0] != name {
				t.Errorf("%s: the datagram reached %v whole, the answer came from %s", addr, whole, name)
			}
			t.Logf("%s: %d bytes in fragments, received whole by %s, echoed whole from the VIP", addr, dgramSize, name)
		}
		var fragments, orphans, decapFrags, refused uint64
		for i := range s.fleet.LBs {
			st, err := s.LBStatus(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			fragments += st.Events["fragment"]
			orphans += st.Verdicts["drop_fragment_orphan"].Packets
		}
		for i := range s.fleet.Backends {
			bs, err := s.BackendHostStats(i)
			if err != nil {
				t.Fatal(err)
			}
			decapFrags += bs.Counters["decap_fragment"].Packets
			refused += bs.Counters["refused_fragment"].Packets
		}
		// 3 fragments each way at least (IPv4: 1480 + 1480 + 1048 bytes; IPv6: 1448 × 2 + 1112)
		if fragments < 6 || decapFrags < fragments || orphans != 0 || refused != 0 {
			t.Errorf("LB nodes balanced %d fragments (%d orphans), backends took %d (%d refused)", fragments, orphans, decapFrags, refused)
		}
	})

	t.Run("1 MB through a 1280-byte link toward the client", func(t *testing.T) {
		setRouterClientMTU(t, s, 1280)
		// without the errors reaching a backend: stalled
		undo := dropRouterICMPToVIPs(t, s)
		var stalled sync.WaitGroup
		for _, vip := range []string{edgeVIP4, edgeVIP6} {
			stalled.Add(1)
			go func() {
				defer stalled.Done()
				n, err := fetchBulk(ctx, s, vip, 3*time.Second)
				if err == nil || n >= bulkSize {
					t.Errorf("%s: with the router's errors lost, %d bytes arrived (%v); the test shows nothing", vip, n, err)
				}
				t.Logf("%s: errors lost: %d of %d bytes after 3 s (%v)", vip, n, bulkSize, err)
			}()
		}
		stalled.Wait()
		undo()

		before := edgeCounts(ctx, t, s)
		for _, vip := range []string{edgeVIP4, edgeVIP6} {
			start := time.Now()
			n, err := fetchBulk(ctx, s, vip, 30*time.Second)
			if err != nil || n != bulkSize {
				t.Fatalf("%s: %d of %d bytes: %v", vip, n, bulkSize, err)
			}
			t.Logf("%s: errors forwarded: %d bytes in %v", vip, n, time.Since(start).Round(time.Millisecond))
		}
		after := edgeCounts(ctx, t, s)
		if after.icmpErrors <= before.icmpErrors || after.decapICMP <= before.decapICMP {
			t.Errorf("LB nodes forwarded %d ICMP errors, backends took %d: want some of each",
				after.icmpErrors-before.icmpErrors, after.decapICMP-before.decapICMP)
		}
	})
}

// sendDatagram sends dgramSize random bytes from the client to addr (again, a few times,
// should one be lost) and returns who answered and the datagram's digest; the answer must
// echo the datagram whole.
func sendDatagram(ctx context.Context, t *testing.T, s *sandbox, addr netip.AddrPort) (name, digest string) {
	t.Helper()
	c, err := s.fleet.Client.DialContext(ctx, "udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 65536)
	for attempt := range 5 {
		d := make([]byte, dgramSize)
		_, _ = rand.Read(d)
		sum := sha256.Sum256(d)
		digest = hex.EncodeToString(sum[:])
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Logf("%s: attempt %d: %v", addr, attempt, err)
			continue
		}
		head, echoed, _ := bytes.Cut(buf[:n], []byte("\n"))
		var size int
		var got string
		if _, err := fmt.Sscanf(string(head), "%s %d %s", &name, &size, &got); err != nil {
			t.Fatalf("answer %q: %v", head, err)
		}
		if size != dgramSize || got != digest {
			t.Fatalf("%s: the backend %s received %d bytes with digest %s, sent %d with %s", addr, name, size, got, dgramSize, digest)
		}
		if !bytes.Equal(echoed, d) {
			t.Fatalf("%s: the answer from %s echoed %d bytes, not the %d sent", addr, name, len(echoed), len(d))
		}
		return name, digest
	}
	t.Fatalf("%s: no answer to 5 datagrams", addr)
	return "", ""
}

// fetchBulk connects from the client to vip:bulkPort and reads until the backend closes
// or timeout passes; it returns the bytes read, checked against the pattern.
func fetchBulk(ctx context.Context, s *sandbox, vip string, timeout time.Duration) (int, error) {
	c, err := s.fleet.Client.DialContext(ctx, "tcp", net.JoinHostPort(vip, fmt.Sprint(bulkPort)))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	got, err := io.ReadAll(c)
	if !bytes.Equal(got, bulkPayload()[:min(len(got), bulkSize)]) {
		return len(got), errors.New("the bytes differ from what the backend sent")
	}
	return len(got), err
}

// setRouterClientMTU sets the MTU of the router's end of the client's link (the client's
// end keeps its 1500).
func setRouterClientMTU(t *testing.T, s *sandbox, mtu int) {
	t.Helper()
	nh, err := s.fleet.Router.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	l, err := nh.LinkByName(s.fleet.Client.Peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := nh.LinkSetMTU(l, mtu); err != nil {
		t.Fatal(err)
	}
}

// dropRouterICMPToVIPs makes the router discard the ICMP and ICMPv6 it sends to the VIPs
// (a policy rule for those protocols to a blackhole table), and returns what undoes it.
func dropRouterICMPToVIPs(t *testing.T, s *sandbox) (undo func()) {
	t.Helper()
	nh, err := s.fleet.Router.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	const table = 0x4c45
	var rules []*netlink.Rule
	var routes []*netlink.Route
	for _, vip := range []string{edgeVIP4, edgeVIP6} {
		a := netip.MustParseAddr(vip)
		dst := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
		family, proto := unix.AF_INET, unix.IPPROTO_ICMP
		if a.Is6() {
			family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
		}
		rt := &netlink.Route{Dst: dst, Table: table, Type: unix.RTN_BLACKHOLE, Family: family}
		if err := nh.RouteAdd(rt); err != nil {
			t.Fatalf("blackhole %s: %v", vip, err)
		}
		routes = append(routes, rt)
		r := netlink.NewRule()
		r.Family, r.Table, r.Dst, r.IPProto, r.Priority = family, table, dst, proto, 100
		if err := nh.RuleAdd(r); err != nil {
			t.Fatalf("rule for icmp to %s: %v", vip, err)
		}
		rules = append(rules, r)
	}
	return func() {
		defer nh.Close()
		for _, r := range rules {
			if err := nh.RuleDel(r); err != nil {
				t.Errorf("remove rule: %v", err)
			}
		}
		for _, rt := range routes {
			if err := nh.RouteDel(rt); err != nil {
				t.Errorf("remove blackhole: %v", err)
			}
		}
	}
}

type edgeCount struct{ icmpErrors, decapICMP uint64 }

// edgeCounts sums the LB nodes' icmp_error events and the backends' decap_icmp_error.
func edgeCounts(ctx context.Context, t *testing.T, s *sandbox) edgeCount {
	t.Helper()
	var c edgeCount
	for i := range s.fleet.LBs {
		st, err := s.LBStatus(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		c.icmpErrors += st.Events["icmp_error"]
	}
	for i := range s.fleet.Backends {
		bs, err := s.BackendHostStats(i)
		if err != nil {
			t.Fatal(err)
		}
		c.decapICMP += bs.Counters["decap_icmp_error"].Packets
	}
	return c
}
