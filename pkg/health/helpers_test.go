package health

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/wait"
	"github.com/prometheus/client_golang/prometheus"
)

// fast is a spec that settles in well under a second, with a timeout generous
// enough for a TLS handshake under -race on a loaded 2-core machine.
func fast(typ string) Spec {
	return Spec{Type: typ, Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, Rise: 2, Fall: 2}
}

func target(t testing.TB, addr string, spec Spec) Target {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	return Target{Key: Key{VIP: "vip1", Backend: ap.Addr(), Port: ap.Port()}, Addr: ap, Spec: spec}
}

// mustRun starts c.Run and stops it at cleanup, failing if it does not return.
func mustRun(t testing.TB, c *Checker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return within 5s of cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func newTestChecker(t testing.TB, reg prometheus.Registerer) *Checker {
	t.Helper()
	return NewChecker(Options{Registerer: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// waitFor polls cond every 5ms (internal/wait) until it holds, and fails the test if it
// does not within d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := wait.Until(d, 5*time.Millisecond, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// waitStatus waits for key to reach want and returns its state.
func waitStatus(t testing.TB, c *Checker, key Key, want Status) State {
	t.Helper()
	var st State
	waitFor(t, 5*time.Second, key.String()+" "+want.String(), func() bool {
		st = c.States()[key]
		return st.Status == want
	})
	return st
}

// tcpServer accepts and closes connections on a loopback port until cleanup.
func tcpServer(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln
}

// udpServer answers each datagram with "pong:"+payload unless silent is set.
func udpServer(t testing.TB, silent *atomic.Bool) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if !silent.Load() {
				_, _ = pc.WriteTo(append([]byte("pong:"), buf[:n]...), from)
			}
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return pc
}

// closedPort returns a loopback TCP address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
