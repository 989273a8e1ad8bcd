package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func runProbe(t *testing.T, tg Target) error {
	t.Helper()
	tg.Spec = tg.Spec.WithDefaults()
	if err := tg.Spec.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tg.Spec.Timeout)
	defer cancel()
	return proberFor(tg.Spec.Type)(ctx, &net.Dialer{}, &tg)
}

func TestProbeTCP(t *testing.T) {
	ln := tcpServer(t)
	if err := runProbe(t, target(t, ln.Addr().String(), Spec{Type: TypeTCP})); err != nil {
		t.Errorf("listening port: %v", err)
	}
	if ln6, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Logf("no IPv6 loopback: %v", err)
	} else {
		defer ln6.Close()
		if err := runProbe(t, target(t, ln6.Addr().String(), Spec{Type: TypeTCP})); err != nil {
			t.Errorf("IPv6 listening port: %v", err)
		}
	}
	err := runProbe(t, target(t, closedPort(t), Spec{Type: TypeTCP}))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("closed port: %v, want connection refused", err)
	}
	full := fullListener(t)
	err = runProbe(t, target(t, full, Spec{Type: TypeTCP, Timeout: 100 * time.Millisecond}))
	if !isTimeout(err) {
		t.Errorf("listener with a full backlog: %v, want a timeout", err)
	}
}

// fullListener returns the address of a listener that never accepts and whose
// backlog is full, so a new SYN goes unanswered.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	// Fill the backlog: connections the kernel completes but nobody accepts.
	for range 4 {
		c, err := net.DialTimeout("tcp", addr, 50*time.Millisecond)
		if err != nil {
			break // full already
		}
		t.Cleanup(func() { c.Close() })
	}
	return addr
}

// newServer starts an httptest server, TLS (self-signed: the probe must not
// verify it) for https. Its error log is dropped: probes reset connections.
func newServer(typ string, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if typ == TypeHTTPS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	return srv
}

// httpBackend serves /healthz with a status and body the test can change, and
// records the method and Host header of the last request.
type httpBackend struct {
	status     atomic.Int32
	body       atomic.Value // string
	method     atomic.Value // string
	host       atomic.Value // string
	connHeader atomic.Value // string
}

func newHTTPBackend() *httpBackend {
	b := &httpBackend{}
	b.status.Store(200)
	b.body.Store("ok")
	return b
}

func (b *httpBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.method.Store(r.Method)
	b.host.Store(r.Host)
	b.connHeader.Store(r.Header.Get("Connection"))
	if r.URL.Path != "/healthz" {
		http.NotFound(w, r)
		return
	}
	w.WriteHeader(int(b.status.Load()))
	_, _ = io.WriteString(w, b.body.Load().(string))
}

func TestProbeHTTP(t *testing.T) {
	for _, typ := range []string{TypeHTTP, TypeHTTPS} {
		t.Run(typ, func(t *testing.T) {
			b := newHTTPBackend()
			srv := newServer(typ, b)
			defer srv.Close()
			addr := strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://")
			spec := Spec{Type: typ, Path: "/healthz", Host: "svc.example", Method: "POST", ExpectBody: "ok"}

			tests := []struct {
				name    string
				status  int32
				body    string
				spec    func(*Spec)
				wantErr string
			}{
				{name: "200 with body", status: 200, body: "all ok"},
				{name: "wrong status", status: 503, body: "ok", wantErr: "status 503, want 200"},
				{name: "body mismatch", status: 200, body: "degraded", wantErr: `body does not contain "ok"`},
				{name: "expected other status", status: 204, body: "", spec: func(s *Spec) { s.ExpectStatus = 204; s.ExpectBody = "" }},
				{name: "wrong path", status: 200, body: "ok", spec: func(s *Spec) { s.Path = "/nope" }, wantErr: "status 404"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					b.status.Store(tt.status)
					b.body.Store(tt.body)
					s := spec
					if tt.spec != nil {
						tt.spec(&s)
					}
					err := runProbe(t, target(t, addr, s))
					if tt.wantErr == "" && err != nil {
						t.Fatalf("probe: %v", err)
					}
					if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
						t.Fatalf("probe: %v, want an error containing %q", err, tt.wantErr)
					}
				})
			}
			if got := b.method.Load(); got != "POST" {
				t.Errorf("method %v, want POST", got)
			}
			if got := b.host.Load(); got != "svc.example" {
				t.Errorf("Host %v, want svc.example", got)
			}
			if got := b.connHeader.Load(); got != "close" {
				t.Errorf("Connection header %q, want close (no keep-alive)", got)
			}
		})
	}
}

func TestProbeHTTPDefaultHost(t *testing.T) {
	b := newHTTPBackend()
	srv := newServer(TypeHTTP, b)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	if err := runProbe(t, target(t, addr, Spec{Type: TypeHTTP, Path: "/healthz"})); err != nil {
		t.Fatal(err)
	}
	if got := b.host.Load(); got != addr {
		t.Errorf("Host %v, want the target address %s", got, addr)
	}
	if got := b.method.Load(); got != "GET" {
		t.Errorf("method %v, want GET", got)
	}
}

func TestProbeUDP(t *testing.T) {
	var silent atomic.Bool
	pc := udpServer(t, &silent)
	addr := pc.LocalAddr().String()
	spec := Spec{Type: TypeUDP, Payload: []byte("ping"), ExpectReply: []byte("pong:ping"), Timeout: 100 * time.Millisecond}

	if err := runProbe(t, target(t, addr, spec)); err != nil {
		t.Errorf("echo: %v", err)
	}
	any := spec
	any.ExpectReply = nil
	if err := runProbe(t, target(t, addr, any)); err != nil {
		t.Errorf("echo, any reply: %v", err)
	}
	other := spec
	other.ExpectReply = []byte("PONG")
	if err := runProbe(t, target(t, addr, other)); err == nil || !strings.Contains(err.Error(), "does not contain") {
		t.Errorf("mismatched reply: %v, want a mismatch error", err)
	}
	silent.Store(true)
	if err := runProbe(t, target(t, addr, spec)); !isTimeout(err) {
		t.Errorf("silent server: %v, want a timeout", err)
	}
	// Nothing bound: the ICMP port unreachable fails the probe before the timeout.
	pc2, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc2.LocalAddr().String()
	pc2.Close()
	if err := runProbe(t, target(t, closed, spec)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("closed port: %v, want connection refused", err)
	}
}

func TestProbeTimeoutIsTimeout(t *testing.T) {
	// An HTTP server that accepts and never answers.
	ln := tcpHang(t)
	s := Spec{Type: TypeHTTP, Timeout: 50 * time.Millisecond}
	err := runProbe(t, target(t, ln.Addr().String(), s))
	if !isTimeout(err) {
		t.Errorf("hung server: %v, want a timeout", err)
	}
}

// tcpHang accepts connections and holds them open without reading.
func tcpHang(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln
}

// TestProbeMark checks SO_MARK on both kinds of probe socket: the TCP probe's
// own and the net.Dialer's used by http, https and udp.
func TestProbeMark(t *testing.T) {
	const mark = 0x1db
	fd, err := probeSocket(unix.AF_INET, mark)
	if errors.Is(err, unix.EPERM) {
		t.Skip("setting SO_MARK needs CAP_NET_ADMIN")
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK)
	if err != nil || got != mark {
		t.Errorf("tcp probe socket: SO_MARK = %#x (%v), want %#x", got, err, mark)
	}
	l, err := unix.GetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER)
	if err != nil || l.Onoff != 1 || l.Linger != 0 {
		t.Errorf("tcp probe socket: SO_LINGER = %+v (%v), want on, 0s (reset on close)", l, err)
	}
	unix.Close(fd)
	testDialerMark(t, mark)
}

func testDialerMark(t *testing.T, mark int) {
	ln := tcpServer(t)
	d := &net.Dialer{Control: markControl(uint32(mark))}
	tg := target(t, ln.Addr().String(), Spec{Type: TypeTCP})
	c, err := dialTCP(context.Background(), d, &tg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	_ = rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) })
	if gerr != nil || got != mark {
		t.Errorf("dialer socket: SO_MARK = %#x (%v), want %#x", got, gerr, mark)
	}
	if markControl(0) != nil {
		t.Error("mark 0 should leave the socket alone")
	}
}

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		wantErr string
	}{
		{"tcp", Spec{Type: "tcp"}, ""},
		{"type is case-insensitive, query allowed", Spec{Type: "HTTP", Path: "/healthz?x=1"}, ""},
		{"none", Spec{Type: "none"}, ""},
		{"unknown type", Spec{Type: "icmp"}, `type "icmp"`},
		{"relative path", Spec{Type: "http", Path: "healthz"}, "absolute path"},
		{"bad status", Spec{Type: "http", ExpectStatus: 42}, "expect_status 42"},
		{"bad method", Spec{Type: "http", Method: "GET /x"}, "method"},
		{"timeout capped at interval", Spec{Type: "tcp", Interval: time.Second, Timeout: 2 * time.Second}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.WithDefaults().Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tt.wantErr != "" && (!errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate: %v, want ErrBadSpec containing %q", err, tt.wantErr)
			}
		})
	}
	d := Spec{Type: "http"}.WithDefaults()
	if d.Interval != time.Second || d.Timeout != 500*time.Millisecond || d.Rise != 2 || d.Fall != 2 ||
		d.Method != "GET" || d.Path != "/" || d.ExpectStatus != 200 {
		t.Errorf("defaults: %+v", d)
	}
}
