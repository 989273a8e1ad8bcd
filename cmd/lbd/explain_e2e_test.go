package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/daemon"
	"github.com/lbdproj/lbd/internal/wait"
)

// explainOn runs `lbd explain --json` on LB node i, inside its namespace, as an operator
// logged in there would.
func (s *sandbox) explainOn(t *testing.T, ctx context.Context, i int, src netip.AddrPort) daemon.Explanation {
	t.Helper()
	out, err := s.fleet.LBs[i].Command(ctx, testExe(), "explain", "--json", "tcp", src.String(),
		netip.AddrPortFrom(s.vip, s.vipPort).String()).Output()
	if err != nil {
		t.Fatalf("lbd explain on lb%d: %v", i, err)
	}
	var ex daemon.Explanation
	if err := json.Unmarshal(out, &ex); err != nil {
		t.Fatalf("lbd explain on lb%d: %v\n%s", i, err, out)
	}
	return ex
}

// connectFrom opens a connection from the client's src to the VIP, sends one GET, and
// returns the backend that answered (the servers answer with their host name) and the
// connection, left open so that its flow stays in the LB's table.
func (s *sandbox) connectFrom(t *testing.T, src netip.AddrPort) (string, net.Conn) {
	t.Helper()
	d := s.fleet.Client.Dialer()
	d.Timeout = 5 * time.Second
	d.LocalAddr = net.TCPAddrFromAddrPort(src)
	conn, err := d.Dial("tcp", netip.AddrPortFrom(s.vip, s.vipPort).String())
	if err != nil {
		t.Fatalf("connect from %s: %v", src, err)
	}
	t.Cleanup(func() { conn.Close() })
	k := &keepAlive{conn: conn, r: bufio.NewReader(conn)}
	return k.get(t), conn
}

// waitAgree polls lbd explain on every LB node until each says the nodes agree (same
// config, same rings) about src's flow.
func (s *sandbox) waitAgree(t *testing.T, ctx context.Context, src netip.AddrPort) {
	t.Helper()
	for i := range s.fleet.LBs {
		var last daemon.Explanation
		if err := wait.Until(20*time.Second, 50*time.Millisecond, func() (bool, error) {
			last = s.explainOn(t, ctx, i, src)
			return last.Agree, nil
		}); err != nil {
			t.Fatalf("lb%d: the nodes do not agree about %s: %v\n%+v", i, src, err, last)
		}
	}
}

func (s *sandbox) backendAddr(t *testing.T, name string) string {
	t.Helper()
	for _, h := range s.fleet.Backends {
		if h.Name == name {
			return h.Addr.String()
		}
	}
	t.Fatalf("no backend %q", name)
	return ""
}

// lbd explain, asked on each of three LB nodes before a connection, names the backend the
// connection then reaches; after it, the node that carried it shows the flow table entry
// and the others their rings' answer, all agreeing. When that backend's service stops, the
// entry is reported ignored and the flow's next packets go by the ring to another backend,
// which a new connection from another port reaches as predicted.
func TestExplainAnswersWhereConnectionsGo(t *testing.T) {
	s := mustCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// a fixed local port, above the ephemeral range so no other connection takes it
	src := netip.AddrPortFrom(s.fleet.Client.Addr, 61001)

	// A prediction holds while the rings stand still: wait until every node has every
	// backend active and publishes the rings the others have.
	for _, b := range s.fleet.Backends {
		if _, err := s.waitAll(ctx, []int{0, 1, 2}, b.Addr, "active", 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	s.waitAgree(t, ctx, src)

	var predicted string
	for i := range s.fleet.LBs {
		ex := s.explainOn(t, ctx, i, src)
		if ex.VIP != "web" || ex.FlowEntry != nil || ex.By != "ring" || !ex.Agree || len(ex.Nodes) != 3 {
			t.Fatalf("lb%d before the connection: %+v", i, ex)
		}
		if i > 0 && ex.Backend != predicted {
			t.Fatalf("lb%d says %s, lb0 says %s", i, ex.Backend, predicted)
		}
		predicted = ex.Backend
	}
	name, _ := s.connectFrom(t, src)
	reached := s.backendAddr(t, name)
	if reached != predicted {
		t.Fatalf("explain predicted %s, the connection from %s reached %s (%s)", predicted, src, reached, name)
	}
	t.Logf("%s -> %s: explain predicted %s, the connection reached %s", src, s.vip, predicted, name)

	carriers := 0
	for i := range s.fleet.LBs {
		ex := s.explainOn(t, ctx, i, src)
		if ex.Backend != reached || !ex.Agree {
			t.Errorf("lb%d after the connection: backend %s, agree %v; want %s", i, ex.Backend, ex.Agree, reached)
		}
		if fe := ex.FlowEntry; fe != nil {
			carriers++
			if fe.Stale || fe.Backend.String() != reached || ex.By != "flow_table" || fe.Generation == 0 {
				t.Errorf("lb%d: flow entry %+v, by %s; want %s by the flow table", i, fe, ex.By, reached)
			}
		}
		for _, n := range ex.Nodes {
			if n.State != "alive" || !n.SameConfig || !n.SameRings || n.Probe != "up" {
				t.Errorf("lb%d's view of %s: %+v", i, n.Name, n)
			}
		}
	}
	if carriers == 0 {
		t.Errorf("no LB node has the connection's flow in its table")
	}

	// the backend's service stops: every node takes it out, the entry is ignored
	if err := s.StopServer(name); err != nil {
		t.Fatal(err)
	}
	if _, err := s.waitAll(ctx, []int{0, 1, 2}, netip.MustParseAddr(reached), "down", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for i := range s.fleet.LBs {
		ex := s.explainOn(t, ctx, i, src)
		if ex.Backend == reached || ex.By != "ring" || ex.Backend != ex.Ring.Backend.String() {
			t.Errorf("lb%d with %s down: %+v", i, reached, ex)
		}
		if fe := ex.FlowEntry; fe != nil && (!fe.Stale || fe.StaleReason != "the backend is down") {
			t.Errorf("lb%d: entry %+v, want it ignored as down", i, fe)
		}
	}
	src2 := netip.AddrPortFrom(s.fleet.Client.Addr, 61002)
	s.waitAgree(t, ctx, src2) // the nodes publish their new rings a gossip round later
	predicted = s.explainOn(t, ctx, 0, src2).Backend
	if name2, _ := s.connectFrom(t, src2); s.backendAddr(t, name2) != predicted {
		t.Fatalf("with %s down, explain predicted %s for %s, the connection reached %s", name, predicted, src2, name2)
	}

	// the text form names the same
	out, err := s.fleet.LBs[0].Command(ctx, testExe(), "explain", "tcp", src2.String(),
		netip.AddrPortFrom(s.vip, s.vipPort).String()).Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lbd explain on lb0:\n%s", out)
	for _, want := range []string{"VIP web (198.18.0.10:80/tcp)", "=> " + predicted + ", by the ",
		"the LB nodes agree: each sends a new connection of this flow to " + predicted} {
		if !strings.Contains(string(out), want) {
			t.Errorf("lbd explain lacks %q:\n%s", want, out)
		}
	}
}
