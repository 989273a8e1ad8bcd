package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/testbed"
	"github.com/lbdproj/lbd/pkg/quiccid"
	"github.com/quic-go/quic-go"
)

// quicVIP serves QUIC on UDP 4433 over three backends, each with its quic_server_id.
const quicVIP = `node:
  interface: eth0
vips:
  - name: h3
    address: 198.18.0.20
    port: 4433
    protocol: udp
    quic: %t
    backends:
      - address: 198.18.0.11
        %s
      - address: 198.18.0.12
        %s
      - address: 198.18.0.13
        %s
    health:
      type: none
`

func quicConfig(withQUIC bool) []byte {
	ids := []string{"weight: 1", "weight: 1", "weight: 1"}
	if withQUIC {
		ids = []string{"quic_server_id: 1", "quic_server_id: 2", "quic_server_id: 3"}
	}
	return []byte(fmt.Sprintf(quicVIP, withQUIC, ids[0], ids[1], ids[2]))
}

// TestQUICSurvivesClientPortChange: a real QUIC connection (quic-go on both ends) through a
// VIP with quic: true keeps its server while the client moves to new source ports (a new
// path, RFC 9000 section 9): lbd routes its short headers by the server id in the
// connection ids the server issued. Without quic: true the same moves take the connection
// to other servers, which know nothing of it, and it breaks.
func TestQUICSurvivesClientPortChange(t *testing.T) {
	for _, withQUIC := range []bool{true, false} {
		t.Run(fmt.Sprintf("quic=%t", withQUIC), func(t *testing.T) {
			s := mustSandbox(t, quicConfig(withQUIC), 1, 3)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cert := selfSigned(t)
			for i, h := range s.fleet.Backends {
				startQUICServer(t, ctx, h, uint16(i+1), cert)
			}
			moves, broke, err := migrateUntilBroken(t, ctx, s, 3, 10, withQUIC)
			if err != nil {
				t.Fatal(err)
			}
			if withQUIC {
				if broke != "" {
					t.Fatalf("with quic: true the connection broke after %d moves: %s", moves, broke)
				}
				st, err := s.LBStatus(ctx, 0)
				if err != nil {
					t.Fatal(err)
				}
				if st.Events["quic_cid"] == 0 {
					t.Fatalf("no packet went by its connection id: the ring kept the server by chance")
				}
				t.Logf("with quic: true the connection kept its server over %d changes of the client's port (%d packets routed by connection id)",
					moves, st.Events["quic_cid"])
				return
			}
			if broke == "" {
				t.Fatalf("without quic: true %d changes of the client's port all kept the server: the test shows nothing", moves)
			}
			t.Logf("without quic: true the connection broke at change %d: %s", moves, broke)
		})
	}
}

// migrateUntilBroken opens a QUIC connection to the VIP from the client, asks which server
// it reached, then moves it to a new UDP port and asks again, up to max times (at least
// min when it holds); it returns the moves made and, when one failed or reached another
// server, what happened.
func migrateUntilBroken(t *testing.T, ctx context.Context, s *sandbox, min, max int, stopAfterMin bool) (int, string, error) {
	client := s.fleet.Client
	listen := func() (*quic.Transport, error) {
		pc, err := client.ListenPacket("udp", netip.AddrPortFrom(client.Addr, 0).String())
		if err != nil {
			return nil, err
		}
		return &quic.Transport{Conn: pc}, nil
	}
	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"lbd-test"}} //nolint:gosec // a test's own server
	conf := &quic.Config{MaxIdleTimeout: 5 * time.Second, HandshakeIdleTimeout: 5 * time.Second}
	tr, err := listen()
	if err != nil {
		return 0, "", err
	}
	defer tr.Close()
	vip := &net.UDPAddr{IP: s.vip.AsSlice(), Port: int(s.vipPort)}
	conn, err := tr.Dial(ctx, vip, tlsConf, conf)
	if err != nil {
		return 0, "", fmt.Errorf("dial the VIP: %w", err)
	}
	defer func() { _ = conn.CloseWithError(0, "") }()
	first, err := askServer(ctx, conn)
	if err != nil {
		return 0, "", fmt.Errorf("first request: %w", err)
	}
	for move := 1; move <= max; move++ {
		next, err := listen()
		if err != nil {
			return move, "", err
		}
		defer next.Close()
		path, err := conn.AddPath(next)
		if err != nil {
			return move, "", fmt.Errorf("add a path: %w", err)
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = path.Probe(pctx)
		cancel()
		if err != nil {
			return move, fmt.Sprintf("probing the new path from %s failed: %v", next.Conn.LocalAddr(), err), nil
		}
		if err := path.Switch(); err != nil {
			return move, "", fmt.Errorf("switch: %w", err)
		}
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		got, err := askServer(rctx, conn)
		cancel()
		switch {
		case err != nil:
			return move, fmt.Sprintf("a request from %s failed: %v", next.Conn.LocalAddr(), err), nil
		case got != first:
			return move, fmt.Sprintf("from %s the connection reached %s, not %s", next.Conn.LocalAddr(), got, first), nil
		}
		if move >= min && stopAfterMin {
			return move, "", nil
		}
	}
	return max, "", nil
}

// askServer opens a stream and reads the server's name.
func askServer(ctx context.Context, conn *quic.Conn) (string, error) {
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return "", err
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(d)
	}
	if _, err := io.WriteString(st, "who\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(st).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// startQUICServer serves QUIC on UDP 4433 of h: each stream gets h's name. Its connection ids
// carry sid (pkg/quiccid), as a server behind a quic: true VIP must issue them.
func startQUICServer(t *testing.T, ctx context.Context, h *testbed.Host, sid uint16, cert tls.Certificate) {
	t.Helper()
	pc, err := h.ListenPacket("udp", ":4433")
	if err != nil {
		t.Fatalf("udp 4433 on %s: %v", h.Name, err)
	}
	tr := &quic.Transport{Conn: pc, ConnectionIDGenerator: quiccid.Generator{ServerID: sid}}
	ln, err := tr.Listen(&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"lbd-test"}},
		&quic.Config{MaxIdleTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("quic on %s: %v", h.Name, err)
	}
	t.Cleanup(func() { _ = ln.Close(); _ = tr.Close() })
	go func() {
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				for {
					st, err := conn.AcceptStream(ctx)
					if err != nil {
						return
					}
					go func() {
						defer st.Close()
						if _, err := bufio.NewReader(st).ReadString('\n'); err != nil && !errors.Is(err, io.EOF) {
							return
						}
						_, _ = io.WriteString(st, h.Name+"\n")
					}()
				}
			}()
		}
	}()
}

// selfSigned is a certificate for the test's QUIC servers.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lbd-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"lbd-test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
