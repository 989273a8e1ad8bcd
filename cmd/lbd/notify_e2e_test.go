package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/internal/wait"
	"golang.org/x/sys/unix"
)

// sdMessage is one sd_notify datagram as systemd receives it: the sender's pid (from the
// socket's credentials) and its KEY=VALUE lines.
type sdMessage struct {
	pid    int
	fields map[string]string
	raw    string
}

func (m sdMessage) String() string { return fmt.Sprintf("pid %d: %q", m.pid, m.raw) }

// notifySocket stands in for systemd's notification socket: a unixgram socket with
// SO_PASSCRED, so each message carries the pid of its sender (systemd checks it against
// the main pid for NotifyAccess=main). A filesystem path, not an abstract name, reaches it
// from every network namespace.
type notifySocket struct {
	path string
	conn *net.UnixConn

	mu   sync.Mutex
	msgs []sdMessage
}

// listenNotify opens the socket; onMsg (may be nil) sees each message in order, on the
// reading goroutine, before it is recorded.
func listenNotify(t *testing.T, onMsg func(sdMessage)) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "lbd-notify-") // short: a socket path holds 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "notify")}
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := n.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		n.conn.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
		for {
			nb, noob, _, _, err := n.conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return // closed
			}
			m := sdMessage{raw: string(buf[:nb]), fields: map[string]string{}}
			if cmsgs, err := unix.ParseSocketControlMessage(oob[:noob]); err == nil && len(cmsgs) > 0 {
				if cred, err := unix.ParseUnixCredentials(&cmsgs[0]); err == nil {
					m.pid = int(cred.Pid)
				}
			}
			for _, line := range strings.Split(m.raw, "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					m.fields[k] = v
				}
			}
			if onMsg != nil {
				onMsg(m)
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, m)
			n.mu.Unlock()
		}
	}()
	return n
}

// all returns the messages received so far.
func (n *notifySocket) all() []sdMessage {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]sdMessage(nil), n.msgs...)
}

// next waits for the first message from pid after the first `after` messages that has
// field key=value, and returns its index.
func (n *notifySocket) next(pid, after int, key, value string, timeout time.Duration) (int, sdMessage, error) {
	var idx int
	var got sdMessage
	err := wait.Until(timeout, 20*time.Millisecond, func() (bool, error) {
		msgs := n.all()
		for i := after; i < len(msgs); i++ {
			if msgs[i].pid == pid && msgs[i].fields[key] == value {
				idx, got = i, msgs[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return 0, got, fmt.Errorf("no %s=%s from pid %d: %w; messages: %v", key, value, pid, err, n.all())
	}
	return idx, got, nil
}

func monotonicUsec(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano() / 1000)
}

// firstSYNAnswered opens a new connection from the client to the VIP, allowing only the
// first SYN: Linux retransmits an unanswered SYN after 1 s (TCP_TIMEOUT_INIT), so a
// connection within 900 ms was answered by whatever served the VIP when it was dialled, not
// by an lbd that became ready a moment later. It returns the backend that answered a GET.
func firstSYNAnswered(s *sandbox) (string, error) {
	d := s.fleet.Client.Dialer()
	d.Timeout = 900 * time.Millisecond
	conn, err := d.Dial("tcp", netip.AddrPortFrom(s.vip, s.vipPort).String())
	if err != nil {
		return "", fmt.Errorf("first SYN unanswered: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// readyCheck is what the test saw the moment lbd run said READY=1.
type readyCheck struct {
	msg     sdMessage
	backend string // the backend that answered a new connection to the VIP
	slots   int    // ring slots the status API showed for the VIP
	err     error
}

// TestSystemdNotify starts lbd run and lbd backend the way systemd starts a Type=notify
// service: NOTIFY_SOCKET names a socket the test reads. lbd run says READY=1 only when the
// VIP answers: at that message, with no retry, a new connection to the VIP reaches a
// backend. A reload says RELOADING=1 (with MONOTONIC_USEC, which systemd ≥ 253 needs) and
// READY=1 again, a refused one too (the old config keeps serving); a stop says STOPPING=1.
func TestSystemdNotify(t *testing.T) {
	var sb atomic.Pointer[sandbox]
	checked := make(chan readyCheck, 1)
	var once sync.Once
	ns := listenNotify(t, func(m sdMessage) {
		s := sb.Load()
		if s == nil || m.fields["READY"] != "1" || !strings.HasPrefix(m.fields["STATUS"], "serving") {
			return
		}
		once.Do(func() {
			c := readyCheck{msg: m}
			c.backend, c.err = firstSYNAnswered(s)
			if c.err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				st, err := s.LBStatus(ctx, 0)
				c.err = err
				if err == nil && len(st.VIPs) > 0 {
					for _, b := range st.VIPs[0].Backends {
						c.slots += b.Slots
					}
				}
			}
			checked <- c
		})
	})
	s := mustSandboxOpts(t, sandboxOptions{config: configs.Demo, lbs: 1, backends: 3,
		wrap: []string{"env", "NOTIFY_SOCKET=" + ns.path}, // env(1) execs lbd: the pid stays lbd's
		beforeLB: func(s *sandbox) error {
			// the client's route to the VIP exists before lbd run starts, so the only thing
			// missing until READY=1 is lbd itself
			for _, v := range s.cfg.VIPs {
				if err := s.fleet.RouteVIP(netip.PrefixFrom(v.Address, v.Address.BitLen()), s.fleet.LBs...); err != nil {
					return err
				}
			}
			sb.Store(s)
			return nil
		}})
	lb := s.lbProcs[0]

	var c readyCheck
	select {
	case c = <-checked:
	case <-time.After(30 * time.Second):
		t.Fatalf("no READY=1 with STATUS=serving from lbd run; messages: %v\n%s", ns.all(), lb.Output())
	}
	if c.err != nil {
		t.Fatalf("at READY=1 (%v) the VIP did not answer: %v", c.msg, c.err)
	}
	if c.msg.pid != lb.Pid() {
		t.Errorf("READY=1 came from pid %d, lbd run is %d (systemd's NotifyAccess=main would ignore it)", c.msg.pid, lb.Pid())
	}
	if _, ok := s.servers[c.backend]; !ok || c.slots != int(s.cfg.VIPs[0].RingSize) {
		t.Errorf("at READY=1: answered by %q, status shows %d ring slots; want a backend and all %d", c.backend, c.slots, s.cfg.VIPs[0].RingSize)
	}
	t.Logf("at READY=1 (%s) the VIP answered from %s", c.msg.fields["STATUS"], c.backend)
	for _, p := range s.beProcs {
		if _, _, err := ns.next(p.Pid(), 0, "READY", "1", 5*time.Second); err != nil {
			t.Errorf("lbd backend on %s: %v", p.Host.Name, err)
		}
	}

	// a reload on SIGHUP, as ExecReload sends it
	mark := len(ns.all())
	before := monotonicUsec(t)
	if err := lb.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	i, rel, err := ns.next(lb.Pid(), mark, "RELOADING", "1", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if usec, err := strconv.ParseUint(rel.fields["MONOTONIC_USEC"], 10, 64); err != nil || usec < before || usec > monotonicUsec(t) {
		t.Errorf("RELOADING=1 with MONOTONIC_USEC=%q, want a CLOCK_MONOTONIC time after %d µs", rel.fields["MONOTONIC_USEC"], before)
	}
	_, ready, err := ns.next(lb.Pid(), i+1, "READY", "1", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ready.fields["STATUS"], "serving 1 VIPs") {
		t.Errorf("after the reload: %v", ready)
	}

	// a config that does not validate: refused, ready again on the old one
	mark = len(ns.all())
	if err := os.WriteFile(s.cfgPath, []byte("node:\n  interface: eth0\nvips:\n  - name: web\n    port: eighty\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := lb.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	i, _, err = ns.next(lb.Pid(), mark, "RELOADING", "1", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, ready, err = ns.next(lb.Pid(), i+1, "READY", "1", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ready.fields["STATUS"], "reload refused") || !strings.Contains(ready.fields["STATUS"], "lbd.yaml:4:5: vips[0].address") {
		t.Errorf("after a refused reload: %v", ready)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if tl := s.Requests(ctx, 20, 4); tl.Failures != 0 {
		t.Errorf("after a refused reload %d of 20 requests failed: %v", tl.Failures, tl.Errors)
	}

	mark = len(ns.all())
	if err := lb.Stop(); err != nil {
		t.Errorf("lbd run on SIGTERM: %v", err)
	}
	if _, _, err := ns.next(lb.Pid(), mark, "STOPPING", "1", 5*time.Second); err != nil {
		t.Error(err)
	}
}
