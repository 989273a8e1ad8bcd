package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/internal/daemon"
	"github.com/lbdproj/lbd/internal/testbed/testbedtest"
	"github.com/lbdproj/lbd/internal/wait"
)

// settled waits until every packet the LB sent has been decapsulated by a backend (the
// last ACKs of closed connections may still be on their way) and returns the LB's status
// and the backends' decap and restore counts. After 5 s it returns them as they are, and
// the caller's assertions say what is missing.
func (s *sandbox) settled(ctx context.Context, t *testing.T) (st daemon.Status, decap, restored uint64) {
	t.Helper()
	err := wait.Until(5*time.Second, 20*time.Millisecond, func() (bool, error) {
		var err error
		if st, err = s.LBStatus(ctx, 0); err != nil {
			return true, err
		}
		decap, restored = 0, 0
		for i := range s.fleet.Backends {
			bs, err := s.BackendHostStats(i)
			if err != nil {
				return true, err
			}
			decap += bs.Counters["decap"].Packets
			restored += bs.Counters["restored"].Packets
		}
		return decap >= st.Verdicts["tx"].Packets, nil
	})
	if err != nil && !errors.Is(err, wait.ErrTimeout) {
		t.Fatal(err)
	}
	return st, decap, restored
}

// testExe is this test binary, which runs as lbd when LBD_TEST_MAIN=1 (see TestMain).
func testExe() string { return os.Args[0] }

// mustSandbox raises a fleet running this test binary as lbd; it skips as non-root.
func mustSandbox(t *testing.T, cfg []byte, lbs, backends int) *sandbox {
	t.Helper()
	return mustSandboxOpts(t, sandboxOptions{config: cfg, lbs: lbs, backends: backends})
}

// mustSandboxOpts is mustSandbox with every option; on failure it logs each LB's output.
func mustSandboxOpts(t *testing.T, o sandboxOptions) *sandbox {
	t.Helper()
	testbedtest.SkipIfNotRoot(t)
	o.exe, o.prefix = testExe(), testPrefix
	s, err := raiseSandbox(o)
	if err != nil {
		t.Fatalf("raise sandbox: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range s.lbProcs {
				if p != nil {
					t.Logf("lbd run on lb%d:\n%s", i, p.Output())
				}
			}
		}
		s.Close()
	})
	return s
}

func TestEndToEnd300Connections(t *testing.T) {
	s := mustSandbox(t, configs.Demo, 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	before, err := s.LBStatus(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	tl := s.Requests(ctx, n, 8)
	if tl.Failures != 0 {
		t.Fatalf("%d of %d requests failed: %v", tl.Failures, n, tl.Errors)
	}
	for _, h := range s.fleet.Backends {
		if got := tl.By[h.Name]; got < n/5 {
			t.Errorf("backend %s served %d of %d (< 20%%): %v", h.Name, got, n, tl.By)
		}
	}

	after, decap, restored := s.settled(ctx, t)
	tx := after.Verdicts["tx"].Packets - before.Verdicts["tx"].Packets
	pass := after.Verdicts["pass"].Packets - before.Verdicts["pass"].Packets
	// every connection sends at least SYN, request and FIN to the VIP, and gets at least
	// SYN-ACK, response and FIN back
	if tx < 3*n || decap < tx {
		t.Errorf("LB sent %d packets to backends, backends decapsulated %d: want >= %d and all of them", tx, decap, 3*n)
	}
	if restored < 3*n {
		t.Errorf("backends restored the VIP on %d replies, want >= %d", restored, 3*n)
	}
	// direct server return: the replies (restored above) never crossed the LB node, which
	// saw only the client's packets and a little neighbour traffic
	if pass >= restored/10 {
		t.Errorf("LB passed %d non-VIP packets while backends sent %d replies: replies went through the LB", pass, restored)
	}
	if drops := after.Verdicts["drop_malformed"].Packets + after.Verdicts["drop_no_backend"].Packets; drops != 0 {
		t.Errorf("LB dropped %d packets", drops)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, yaml, want string }{
		{"yaml syntax", "node:\n  interface: eth0\nvips:\n  - name: web\n    address: [\n", "bad.yaml:"},
		{"unknown field", "node:\n  interface: eth0\n  colour: blue\nvips: []\n", "bad.yaml:3:3: node.colour"},
		{"bad address", "node:\n  interface: eth0\nvips:\n  - name: web\n    address: 198.18.0.300\n    port: 80\n    backends:\n      - address: 198.18.0.11\n", "bad.yaml:5:14: vips[0].address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := dir + "/bad.yaml"
			if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			e := newEnv()
			e.stdout, e.stderr = &stdout, &stderr
			code := run(context.Background(), e, []string{"run", "--config", path})
			if code == exitOK {
				t.Fatalf("lbd run accepted a bad config")
			}
			if !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("stderr does not name %q:\n%s", c.want, stderr.String())
			}
		})
	}
}

// keepAlive is one HTTP/1.1 connection to the VIP that is used again and again.
type keepAlive struct {
	conn net.Conn
	r    *bufio.Reader
}

// request sends one GET for host on the connection, within timeout, and returns the
// response's status and its body, trimmed (the backends answer with their name).
func (k *keepAlive) request(host string, timeout time.Duration) (int, string, error) {
	if err := k.conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, "", err
	}
	if _, err := fmt.Fprintf(k.conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host); err != nil {
		return 0, "", fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return 0, "", fmt.Errorf("read: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// get is one request on the connection; the test fails when it does.
func (k *keepAlive) get(t *testing.T) string {
	t.Helper()
	_, body, err := k.request("vip", 5*time.Second)
	if err != nil {
		t.Fatalf("on the established connection: %v", err)
	}
	return body
}

// try is get that reports an error instead of failing the test.
func (k *keepAlive) try() (string, error) {
	_, body, err := k.request("vip", 5*time.Second)
	return body, err
}

func TestRestartKeepsEstablishedFlows(t *testing.T) {
	s := mustSandbox(t, configs.Demo, 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := s.fleet.Client.DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", s.vip, s.vipPort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	k := &keepAlive{conn: conn, r: bufio.NewReader(conn)}
	first := k.get(t)

	if err := s.lbProcs[0].Stop(); err != nil && !strings.Contains(err.Error(), "terminated") {
		t.Logf("stop lbd run: %v", err)
	}
	// no lbd running: the pinned program keeps forwarding
	if got := k.get(t); got != first {
		t.Fatalf("with lbd stopped the connection moved from %s to %s", first, got)
	}
	// the new lbd has flow tables of another size: the pinned ones' flows are copied over
	cfg, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	resized := strings.Replace(string(cfg), "node:\n", "node:\n  flow_table_size: 131072\n", 1)
	if resized == string(cfg) {
		t.Fatal("demo config has no node section to resize")
	}
	if err := os.WriteFile(s.cfgPath, []byte(resized), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.StartLB(0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.lbProcs[0].Output(), "adopted pinned link") {
		t.Errorf("restarted lbd did not adopt the pinned link:\n%s", s.lbProcs[0].Output())
	}
	if !strings.Contains(s.lbProcs[0].Output(), "flow tables resized") {
		t.Errorf("restarted lbd did not copy its flows into tables of the new size:\n%s", s.lbProcs[0].Output())
	}
	st, err := s.LBStatus(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f := st.FlowTables["ipv4"]; f.Size != 131072 || f.Entries == 0 {
		t.Errorf("ipv4 flow table after the restart: %+v, want 131072 entries with the connection's flow", f)
	}
	for range 5 {
		if got := k.get(t); got != first {
			t.Fatalf("after the restart the connection moved from %s to %s", first, got)
		}
	}
	if tl := s.Requests(ctx, 30, 4); tl.Failures != 0 {
		t.Fatalf("new connections after the restart: %d failed: %v", tl.Failures, tl.Errors)
	}
}

func TestReloadRefusesBadConfigAndAppliesGoodOne(t *testing.T) {
	s := mustSandbox(t, configs.Demo, 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lb := s.lbProcs[0]

	// a broken file: refused, the old config keeps serving all three backends
	if err := os.WriteFile(s.cfgPath, []byte("node:\n  interface: eth0\nvips:\n  - name: web\n    port: eighty\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := lb.WaitForLog("reload refused", 10*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, lb.Output())
	}
	if !strings.Contains(lb.Output(), "lbd.yaml:5:") {
		t.Errorf("refusal does not name the file and line:\n%s", lb.Output())
	}
	if tl := s.Requests(ctx, 60, 4); tl.Failures != 0 || len(tl.By) != 3 {
		t.Fatalf("after a refused reload: %d failures, served by %v", tl.Failures, tl.By)
	}

	// a good file without be2: applied, be2 gets no new connections
	good := strings.Replace(string(configs.Demo), "      - address: 198.18.0.13\n        weight: 1\n", "", 1)
	if good == string(configs.Demo) {
		t.Fatal("demo config changed shape: cannot remove be2")
	}
	if err := os.WriteFile(s.cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := lb.WaitForLog("config reloaded", 10*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, lb.Output())
	}
	tl := s.Requests(ctx, 60, 4)
	if tl.Failures != 0 || tl.By["be2"] != 0 || len(tl.By) != 2 {
		t.Fatalf("after removing be2: %d failures, served by %v", tl.Failures, tl.By)
	}
}

// TestRunRefusesPinDirOffBPFFS: a pin_dir that is not on a bpffs is a clear error, not a
// crash (as under `ip netns exec`, where /sys/fs/bpf is plain sysfs).
func TestRunRefusesPinDirOffBPFFS(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/lbd.yaml"
	cfg := "node:\n  interface: lo\n  pin_dir: " + dir + "/pins\nvips:\n  - name: web\n    address: 198.18.0.10\n    port: 80\n    backends:\n      - address: 198.18.0.11\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := newEnv()
	e.stdout, e.stderr = &stdout, &stderr
	if code := run(context.Background(), e, []string{"run", "--config", path}); code != exitFailure {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFailure, stderr.String())
	}
	if !strings.Contains(stderr.String(), "not on a bpf filesystem") || !strings.Contains(stderr.String(), "mount -t bpf bpf") {
		t.Fatalf("stderr does not say what is wrong and how to fix it:\n%s", stderr.String())
	}
}
