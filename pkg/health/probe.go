package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// maxBody bounds how much of an HTTP body is searched for ExpectBody.
const maxBody = 64 << 10

// prober runs one probe of one target. ctx carries the probe's timeout.
type prober func(ctx context.Context, d *net.Dialer, t *Target) error

func proberFor(typ string) prober {
	switch typ {
	case TypeTCP:
		return probeTCP
	case TypeHTTP:
		return probeHTTP
	case TypeHTTPS:
		return probeHTTPS
	case TypeUDP:
		return probeUDP
	}
	return nil
}

// probeTCP succeeds when a TCP connection is established.
func probeTCP(ctx context.Context, _ *net.Dialer, t *Target) error {
	return connectTCP(ctx, t.Addr, t.Mark)
}

func probeHTTP(ctx context.Context, d *net.Dialer, t *Target) error {
	return probeHTTPOver(ctx, d, t, false)
}

func probeHTTPS(ctx context.Context, d *net.Dialer, t *Target) error {
	return probeHTTPOver(ctx, d, t, true)
}

// probeHTTPOver sends one request on a fresh connection (Connection: close, no pool)
// and checks the status and, if asked, a substring of the first maxBody bytes.
// Certificates are not verified: backends are addressed by IP and the probe asks
// "is the service answering", not "is this the right server" (the LB never
// terminates TLS; clients verify the certificate themselves).
func probeHTTPOver(ctx context.Context, d *net.Dialer, t *Target, useTLS bool) error {
	s := &t.Spec
	conn, err := dialTCP(ctx, d, t)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := bindDeadline(ctx, conn)
	defer stop()

	host := s.Host
	if host == "" {
		host = t.Addr.String()
	}
	scheme := "http"
	if useTLS {
		scheme = "https"
		cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see above
		if s.Host != "" && net.ParseIP(s.Host) == nil {
			cfg.ServerName, _, _ = strings.Cut(s.Host, ":") // SNI for name-based backends
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	req, err := http.NewRequestWithContext(ctx, s.Method, scheme+"://"+t.Addr.String()+s.Path, nil)
	if err != nil {
		return err
	}
	req.Host = host
	req.Close = true
	req.Header.Set("User-Agent", "lbd-health")
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != s.ExpectStatus {
		return fmt.Errorf("status %d, want %d", resp.StatusCode, s.ExpectStatus)
	}
	if s.ExpectBody != "" {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if err != nil {
			return fmt.Errorf("read body: %w", err)
		}
		if !strings.Contains(string(body), s.ExpectBody) {
			return fmt.Errorf("body does not contain %q", s.ExpectBody)
		}
	}
	return nil
}

var udpBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// probeUDP sends Payload and succeeds on the first reply that contains ExpectReply
// (any reply if empty). The socket is connected, so an ICMP port unreachable fails
// the probe at once instead of waiting for the timeout.
func probeUDP(ctx context.Context, d *net.Dialer, t *Target) error {
	conn, err := d.DialContext(ctx, "udp", t.Addr.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := bindDeadline(ctx, conn)
	defer stop()
	if _, err := conn.Write(t.Spec.Payload); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	n, err := conn.Read(*bp)
	if err != nil {
		return fmt.Errorf("no reply: %w", err)
	}
	if !bytes.Contains((*bp)[:n], t.Spec.ExpectReply) {
		return fmt.Errorf("reply (%d bytes) does not contain the expected %d bytes", n, len(t.Spec.ExpectReply))
	}
	return nil
}

// dialTCP connects and arranges for Close to send a reset rather than a FIN, as
// connectTCP does.
func dialTCP(ctx context.Context, d *net.Dialer, t *Target) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", t.Addr.String())
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c, nil
}

// bindDeadline applies ctx's deadline to conn and unblocks conn when ctx is
// cancelled early (checker stopping). Call the returned func when done.
func bindDeadline(ctx context.Context, conn net.Conn) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
}

// isTimeout reports whether a probe failed by running out of time.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}
