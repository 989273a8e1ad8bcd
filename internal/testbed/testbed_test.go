package testbed_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/lbdproj/lbd/internal/testbed"
	"github.com/lbdproj/lbd/internal/testbed/testbedtest"
	"github.com/lbdproj/lbd/internal/wait"
	"github.com/vishvananda/netlink/nl"
)

func newFleet(t *testing.T, opts testbed.Options) *testbed.Fleet {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = testbed.TestPrefix
	}
	return testbedtest.New(t, opts)
}

// echo serves one connection on l, writing back what it reads.
func echo(t *testing.T, l net.Listener) {
	t.Helper()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

func exchange(t *testing.T, from *testbed.Host, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := from.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from.Name, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("hello from " + from.Name)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo from %s = %q, want %q", addr, got, msg)
	}
}

func TestClientReachesBackends(t *testing.T) {
	f := newFleet(t, testbed.Options{LBs: 2, Backends: 2})
	for _, be := range f.Backends {
		for _, a := range []netip.Addr{be.Addr, be.Addr6} {
			l, err := be.Listen("tcp", netip.AddrPortFrom(a, 8080).String())
			if err != nil {
				t.Fatalf("listen on %s: %v", be.Name, err)
			}
			t.Cleanup(func() { l.Close() })
			echo(t, l)
			exchange(t, f.Client, l.Addr().String())
		}
	}
	// The client's listener must not be reachable in the root namespace:
	// sockets really live in the host's namespace.
	l, err := f.Client.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatalf("client's loopback listener %s reachable from the root namespace", l.Addr())
	}
}

func TestHTTPClientNewConnectionPerRequest(t *testing.T) {
	f := newFleet(t, testbed.Options{Backends: 1})
	be := f.Backends[0]
	l, err := be.Listen("tcp", netip.AddrPortFrom(be.Addr, 80).String())
	if err != nil {
		t.Fatal(err)
	}
	remotes := make(chan string, 10)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remotes <- r.RemoteAddr
		_, _ = io.WriteString(w, be.Name)
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()

	hc := f.Client.HTTPClient(5 * time.Second)
	for range 3 {
		resp, err := hc.Get("http://" + l.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != be.Name {
			t.Fatalf("body %q, want %q", body, be.Name)
		}
	}
	seen := map[string]bool{}
	for range 3 {
		seen[<-remotes] = true
	}
	if len(seen) != 3 {
		t.Fatalf("3 requests came from %d source ports, want 3 connections", len(seen))
	}
}

func TestNamesCarryID(t *testing.T) {
	f := newFleet(t, testbed.Options{LBs: 2, Backends: 3})
	if len(f.ID) != 6 {
		t.Fatalf("ID %q, want 6 hex digits", f.ID)
	}
	hosts := append([]*testbed.Host{f.Switch}, f.Hosts()...)
	if len(hosts) != 1+1+2+3 {
		t.Fatalf("%d hosts", len(hosts))
	}
	for _, h := range hosts {
		if want := testbed.TestPrefix + "-" + f.ID + "-" + h.Name; h.NS != want {
			t.Errorf("%s: NS %q, want %q", h.Name, h.NS, want)
		}
		if _, err := os.Stat(filepath.Join("/run/netns", h.NS)); err != nil {
			t.Errorf("%s: %v", h.Name, err)
		}
		if h == f.Switch {
			if !strings.HasSuffix(h.Link, "-"+f.ID) {
				t.Errorf("bridge %q lacks the ID", h.Link)
			}
			continue
		}
		if !strings.HasSuffix(h.Peer, "-"+f.ID) || len(h.Peer) > 15 {
			t.Errorf("%s: peer %q lacks the ID or is too long", h.Name, h.Peer)
		}
		if h.Link != "eth0" || h.Ifindex == 0 || len(h.MAC) != 6 {
			t.Errorf("%s: link %q ifindex %d mac %v", h.Name, h.Link, h.Ifindex, h.MAC)
		}
		if !testbed.Net4.Contains(h.Addr) || !testbed.Net6.Contains(h.Addr6) {
			t.Errorf("%s: addresses %s %s outside %s %s", h.Name, h.Addr, h.Addr6, testbed.Net4, testbed.Net6)
		}
	}
	if !strings.Contains(f.PinDir, f.ID) {
		t.Errorf("PinDir %q lacks the ID", f.PinDir)
	}
}

func TestMTUs(t *testing.T) {
	f := newFleet(t, testbed.Options{})
	sh, err := f.Switch.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	for _, h := range f.Hosts() {
		want := testbed.FabricMTU
		if h == f.Client {
			want = testbed.ClientMTU
		}
		nh, err := h.Netlink()
		if err != nil {
			t.Fatal(err)
		}
		l, err := nh.LinkByName(h.Link)
		nh.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Attrs().MTU; got != want {
			t.Errorf("%s eth0 MTU %d, want %d", h.Name, got, want)
		}
		p, err := sh.LinkByName(h.Peer)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Attrs().MTU; got != testbed.FabricMTU {
			t.Errorf("%s MTU %d, want %d", h.Peer, got, testbed.FabricMTU)
		}
	}
}

func TestTwoFleetsAtOnce(t *testing.T) {
	a := newFleet(t, testbed.Options{Backends: 1})
	b := newFleet(t, testbed.Options{Backends: 1})
	if a.ID == b.ID {
		t.Fatalf("same ID %s", a.ID)
	}
	// Same addresses, separate segments: each client reaches its own backend.
	for _, f := range []*testbed.Fleet{a, b} {
		be := f.Backends[0]
		l, err := be.Listen("tcp", netip.AddrPortFrom(be.Addr, 9000).String())
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		echo(t, l)
		exchange(t, f.Client, l.Addr().String())
	}
}

func TestPassProgramOnLBPeers(t *testing.T) {
	f := newFleet(t, testbed.Options{LBs: 2, Backends: 1})
	id, err := f.PassProgramID()
	if err != nil || id == 0 {
		t.Fatalf("pass program id %d: %v", id, err)
	}
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if prog.Type() != ebpf.XDP {
		t.Fatalf("program %d type %v", id, prog.Type())
	}
	sh, err := f.Switch.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	for _, h := range f.Hosts() {
		l, err := sh.LinkByName(h.Peer)
		if err != nil {
			t.Fatal(err)
		}
		x := l.Attrs().Xdp
		isLB := slices.Contains(f.LBs, h)
		attached := x != nil && x.Attached
		if attached != isLB {
			t.Errorf("%s: xdp attached %v, want %v", h.Peer, attached, isLB)
		}
		if isLB && (x.ProgId != uint32(id) || x.AttachMode != nl.XDP_ATTACHED_DRV) {
			t.Errorf("%s: prog %d mode %d, want prog %d in driver mode", h.Peer, x.ProgId, x.AttachMode, id)
		}
	}
}

func TestClientTxChecksumOff(t *testing.T) {
	f := newFleet(t, testbed.Options{})
	on, err := f.Client.TxChecksum()
	if err != nil {
		t.Fatal(err)
	}
	if on {
		t.Error("client tx checksum offload is on")
	}
	on, err = f.Backends[0].TxChecksum()
	if err != nil {
		t.Fatal(err)
	}
	if !on {
		t.Error("backend tx checksum offload is off; only the client's should be")
	}
}

func TestRouteVia(t *testing.T) {
	f := newFleet(t, testbed.Options{})
	lb := f.LBs[0]
	routes := []struct {
		dst netip.Prefix
		via netip.Addr
	}{
		{netip.MustParsePrefix("198.19.0.0/24"), lb.Addr},
		{netip.MustParsePrefix("2001:db8:1::/64"), lb.Addr6},
	}
	nh, err := f.Client.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	for _, r := range routes {
		if err := f.Client.RouteVia(r.dst, r.via); err != nil {
			t.Fatal(err)
		}
		if err := f.Client.RouteVia(r.dst, r.via); err != nil { // replaces
			t.Fatal(err)
		}
		got, err := nh.RouteGet(r.dst.Addr().Next().AsSlice())
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !got[0].Gw.Equal(r.via.AsSlice()) || got[0].LinkIndex != f.Client.Ifindex {
			t.Errorf("route to %s: %+v, want via %s dev eth0", r.dst, got, r.via)
		}
	}
	if err := f.Client.RouteVia(routes[0].dst, lb.Addr6); err == nil {
		t.Error("mixed families accepted")
	}
}

func TestStartProcess(t *testing.T) {
	f := newFleet(t, testbed.Options{Backends: 1})
	be := f.Backends[0]
	p, err := f.Start(be, "sh", "-c", "ip -o addr show dev eth0; echo ready; exec sleep 1000")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitForLog("ready", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Output(), be.Addr.String()+"/24") {
		t.Errorf("process does not see %s on eth0:\n%s", be.Addr, p.Output())
	}
	if err := p.WaitForLog("never printed", 100*time.Millisecond); err == nil {
		t.Error("WaitForLog found a line never printed")
	}
	if err := p.Stop(); !testbed.IsExitError(err) {
		t.Errorf("Stop: %v, want the exit of a SIGTERMed sleep", err)
	}
	if !p.Exited() {
		t.Error("not exited after Stop")
	}

	q, err := f.Start(be, "false")
	if err != nil {
		t.Fatal(err)
	}
	if err := q.WaitForLog("x", 5*time.Second); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("WaitForLog on an exited process: %v", err)
	}
}

func TestCommandAndPinDir(t *testing.T) {
	f := newFleet(t, testbed.Options{})
	out, err := f.LBs[0].Command(context.Background(), "ip", "-o", "link", "show", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "mtu 1600") {
		t.Errorf("lb0 eth0: %s", out)
	}
	// The pin dir is a bpffs in the host mount namespace, visible from
	// processes run with `ip netns exec` (which remounts /sys).
	out, err = f.LBs[0].Command(context.Background(), "stat", "-f", "-c", "%T", f.PinDir).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "bpf_fs" {
		t.Errorf("PinDir seen from lb0 is %q, want bpf_fs", got)
	}
}

func TestLinkStats(t *testing.T) {
	f := newFleet(t, testbed.Options{Backends: 1})
	be := f.Backends[0]
	rx0, _, err := be.LinkStats()
	if err != nil {
		t.Fatal(err)
	}
	_, tx0, err := f.Client.LinkStats()
	if err != nil {
		t.Fatal(err)
	}
	// A listener, so no port unreachable makes later writes fail.
	pc, err := be.ListenPacket("udp", netip.AddrPortFrom(be.Addr, 9999).String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := f.Client.Dialer().Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 10 {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	for i := range 10 {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	err = wait.Until(2*time.Second, 10*time.Millisecond, func() (bool, error) {
		rx, _, err := be.LinkStats()
		return rx >= rx0+10, err
	})
	if err != nil {
		t.Errorf("backend rx: %v", err)
	}
	if _, tx, _ := f.Client.LinkStats(); tx < tx0+10 {
		t.Errorf("client tx %d → %d, want +10", tx0, tx)
	}
}

// TestFirstPacketNotLost: New returns only when the whole path forwards, so
// the first SYN is not dropped and retransmitted a second later.
func TestFirstPacketNotLost(t *testing.T) {
	f := newFleet(t, testbed.Options{Backends: 2})
	for _, be := range f.Backends {
		l, err := be.Listen("tcp", netip.AddrPortFrom(be.Addr, 7).String())
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		d := f.Client.Dialer()
		d.Timeout = 900 * time.Millisecond // below TCP's initial 1s RTO
		c, err := d.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatalf("first dial to %s: %v", be.Name, err)
		}
		c.Close()
	}
}

func TestDoRestoresNamespace(t *testing.T) {
	f := newFleet(t, testbed.Options{Backends: 1})
	self := func() string {
		s, _ := os.Readlink("/proc/thread-self/ns/net")
		return s
	}
	var root string
	onThread := func(fn func()) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			fn()
		}()
		<-done
	}
	onThread(func() { root = self() })
	var inside string
	if err := f.Client.Do(func() error { inside = self(); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside == root {
		t.Fatalf("Do ran in the root namespace %s", root)
	}
	if err := f.Backends[0].Do(func() error { return errors.New("boom") }); err == nil || err.Error() != "boom" {
		t.Errorf("Do error %v, want boom", err)
	}
	func() {
		defer func() {
			if recover() != "panic in fn" {
				t.Error("panic not re-raised")
			}
		}()
		_ = f.Client.Do(func() error { panic("panic in fn") })
	}()
	// Every thread the program runs on is back in the root namespace.
	for range 50 {
		onThread(func() {
			if got := self(); got != root {
				t.Errorf("thread in %s after Do, want %s", got, root)
			}
		})
	}
}
