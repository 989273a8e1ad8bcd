package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/internal/wait"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The scenario, end to end: 3 LB nodes behind the ECMP router, 300 long-lived
// keep-alive connections through the VIP; 2 backends join the 3 (the rings change for
// about 40% of the hash space, each node keeps its established flows), then one LB node
// leaves the router's route, so its flows move to the others (and some flows move between
// the two that stay); then one request on every connection. With flow sync on, they all
// answer; with it off, the count of those that broke is printed and the backends'
// misdelivery counters account for them.
func TestFlowSyncKeepsFlowsWhenBackendsAndNodesChange(t *testing.T) {
	on := flowSyncScenario(t, true)
	off := flowSyncScenario(t, false)
	t.Logf("flow sync on:  %d of %d connections answered after the change; misdelivered packets on the backends: %d",
		on.answered, flowSyncConns, on.misdelivered)
	t.Logf("flow sync off: %d of %d connections answered, %d broke; misdelivered packets on the backends: %d",
		off.answered, flowSyncConns, flowSyncConns-off.answered, off.misdelivered)
	if on.answered < flowSyncConns-1 {
		t.Errorf("with flow sync on, %d of %d connections answered, want at least %d", on.answered, flowSyncConns, flowSyncConns-1)
	}
	if broke := flowSyncConns - on.answered; on.misdelivered < uint64(broke) || on.misdelivered > uint64(3*broke) {
		t.Errorf("with flow sync on, %d connections broke and the backends counted %d misdelivered packets", broke, on.misdelivered)
	}
	// each broken connection's request reaches a backend that holds no socket for it and is
	// counted there (then reset); a retransmission may be counted again
	broke := flowSyncConns - off.answered
	if broke == 0 {
		t.Errorf("with flow sync off no connection broke: the scenario does not test the sync")
	}
	if off.misdelivered < uint64(broke) || off.misdelivered > uint64(3*broke) {
		t.Errorf("with flow sync off, %d connections broke and the backends counted %d misdelivered packets", broke, off.misdelivered)
	}
}

const flowSyncConns = 300

type flowSyncResult struct {
	answered     int
	misdelivered uint64
}

// syncedConn is one long-lived HTTP/1.1 connection and the backend that answered on it.
type syncedConn struct {
	keepAlive
	backend string
}

// request sends one GET on the connection and returns the body (the backend's name).
func (k *syncedConn) request(host string, timeout time.Duration) (string, error) {
	status, body, err := k.keepAlive.request(host, timeout)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("status %d", status)
	}
	return body, nil
}

func flowSyncScenario(t *testing.T, syncOn bool) flowSyncResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := mustSandboxOpts(t, sandboxOptions{config: configs.Demo, lbs: 3, backends: 5, cluster: true, router: true,
		flowSyncOff: !syncOn})
	defer s.Close() // the next scenario builds its own fleet; Cleanup closes it again harmlessly
	for i := range s.fleet.LBs {
		if err := s.waitMembers(ctx, i, 3); err != nil {
			t.Fatal(err)
		}
	}
	s.assertRingsAgree(ctx, t)
	mode := map[bool]string{true: "on", false: "off"}[syncOn]

	conns := s.openKeepAlives(ctx, t, flowSyncConns)
	defer func() {
		for _, k := range conns {
			k.conn.Close()
		}
	}()

	// two backends join the three: every node reloads and builds the same new rings
	added := s.fleet.Backends[3:5]
	base := string(configs.Demo)
	last := fmt.Sprintf("      - address: %s\n        weight: 1\n", s.fleet.Backends[2].Addr)
	if !strings.Contains(base, last) {
		t.Fatalf("the demo config has no backend %s to add others after", s.fleet.Backends[2].Addr)
	}
	more := last
	for _, h := range added {
		more += fmt.Sprintf("      - address: %s\n        weight: 1\n", h.Addr)
	}
	reloaded := time.Now()
	if err := s.reconfigure(sandboxOptions{config: []byte(strings.Replace(base, last, more, 1)), cluster: true, router: true,
		flowSyncOff: !syncOn}); err != nil {
		t.Fatal(err)
	}
	for _, h := range added {
		if _, err := s.waitAll(ctx, []int{0, 1, 2}, h.Addr, "active", 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	s.assertRingsAgree(ctx, t)
	if syncOn {
		s.waitFlowsShared(ctx, t)
		t.Logf("every node's flows at risk shared with the others %v after the reload was signalled (polled every 50 ms)",
			time.Since(reloaded).Round(10*time.Millisecond))
	}
	for i := range s.fleet.LBs {
		if st, err := s.LBStatus(ctx, i); err == nil && st.FlowSync != nil {
			fs := st.FlowSync
			t.Logf("sync %s, lb%d: at risk %d, shared %d, adopted %d, scan of %d flows took %.1f ms, sent %d bytes",
				mode, i, fs.AtRisk, fs.Shared, fs.Adopted, fs.Scanned, fs.ScanTime*1000, fs.SentBytes)
		}
	}

	before := s.misdelivered(ctx, t)
	// lb0 leaves the router's multipath route: its flows move to lb1 and lb2
	if err := s.fleet.RouteVIP(netip.PrefixFrom(s.vip, s.vip.BitLen()), s.fleet.LBs[1], s.fleet.LBs[2]); err != nil {
		t.Fatal(err)
	}
	answered := 0
	var errs []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 30)
	for _, k := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name, err := k.request(s.vip.String(), 5*time.Second)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && name == k.backend:
				answered++
			case err == nil:
				errs = append(errs, fmt.Sprintf("answered by %s, connected to %s", name, k.backend))
			default:
				errs = append(errs, err.Error())
			}
		}()
	}
	wg.Wait()
	after := s.misdelivered(ctx, t)
	if len(errs) > 0 {
		t.Logf("sync %s: %d connections failed, e.g. %q", mode, len(errs), errs[:min(3, len(errs))])
	}
	for i := range s.fleet.LBs {
		if st, err := s.LBStatus(ctx, i); err == nil && st.FlowSync != nil {
			t.Logf("sync %s, lb%d: adopted hits %d", mode, i, st.FlowSync.AdoptedHits)
		}
	}
	return flowSyncResult{answered: answered, misdelivered: after - before}
}

// openKeepAlives opens n keep-alive connections from the client to the VIP (ephemeral
// source ports, so the router spreads them over the LB nodes) and makes one request on
// each, which names the backend that holds it.
func (s *sandbox) openKeepAlives(ctx context.Context, t *testing.T, n int) []*syncedConn {
	t.Helper()
	out := make([]*syncedConn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	addr := netip.AddrPortFrom(s.vip, s.vipPort).String()
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := s.fleet.Client.Dialer()
			d.Timeout = 5 * time.Second
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				errs[i] = err
				return
			}
			k := &syncedConn{keepAlive: keepAlive{conn: c, r: bufio.NewReader(c)}}
			if k.backend, err = k.request(s.vip.String(), 5*time.Second); err != nil {
				c.Close()
				errs[i] = err
				return
			}
			out[i] = k
		}()
	}
	wg.Wait()
	by := map[string]int{}
	for i, err := range errs {
		if err != nil {
			for _, k := range out {
				if k != nil {
					k.conn.Close()
				}
			}
			t.Fatalf("connection %d: %v", i, err)
		}
		by[out[i].backend]++
	}
	t.Logf("%d keep-alive connections by backend: %v", n, by)
	return out
}

// reconfigure writes every LB node's config anew from o (as raiseSandbox does) and tells
// them to reload.
func (s *sandbox) reconfigure(o sandboxOptions) error {
	for i, p := range s.lbProcs {
		if _, err := s.nodeConfig(o, i); err != nil {
			return err
		}
		if err := p.Signal(syscall.SIGHUP); err != nil {
			return err
		}
	}
	return nil
}

// waitFlowsShared waits until every node's last flow sync round scanned its current rings
// and each node holds the flows the others share (no flow is held by two nodes here, so a
// node adopts exactly the sum of the others' shares).
func (s *sandbox) waitFlowsShared(ctx context.Context, t *testing.T) {
	t.Helper()
	var last string
	err := wait.Until(20*time.Second, 50*time.Millisecond, func() (bool, error) {
		shared, adopted := make([]int, len(s.fleet.LBs)), make([]int, len(s.fleet.LBs))
		total := 0
		last = ""
		for i := range s.fleet.LBs {
			st, err := s.LBStatus(ctx, i)
			if err != nil {
				return false, err
			}
			fs := st.FlowSync
			if fs == nil || st.Cluster == nil || fs.Rings != st.Cluster.Fingerprint {
				last = fmt.Sprintf("lb%d's last round is not of its current rings", i)
				return false, nil
			}
			shared[i], adopted[i] = fs.Shared, fs.Adopted
			total += fs.Shared
		}
		for i := range s.fleet.LBs {
			if adopted[i] != total-shared[i] {
				last = fmt.Sprintf("shared %v, adopted %v", shared, adopted)
				return false, nil
			}
		}
		last = fmt.Sprintf("shared %v, adopted %v", shared, adopted)
		return total > 0, nil
	})
	if err != nil {
		t.Fatalf("flows at risk not shared: %s: %v", last, err)
	}
	t.Logf("flows at risk shared: %s", last)
}

// misdelivered sums the backends' misdelivered packets of the VIP, read from each
// backend's /metrics (`lbd backend --api`, alias --metrics), which must agree with its
// pinned counters (`lbd backend --stats` reads those).
func (s *sandbox) misdelivered(ctx context.Context, t *testing.T) uint64 {
	t.Helper()
	vip := fmt.Sprintf("%s/tcp", netip.AddrPortFrom(s.vip, s.vipPort))
	var total uint64
	for i, h := range s.fleet.Backends {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.backendAPI(h).String()+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := h.HTTPClient(3 * time.Second).Do(req)
		if err != nil {
			t.Fatalf("%s /metrics: %v", h.Name, err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s /metrics: %v", h.Name, err)
		}
		var scraped uint64
		if f, ok := fams["lbd_tunnel_misdelivered_packets_total"]; ok {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "vip" && l.GetValue() == vip {
						scraped = uint64(m.GetCounter().GetValue())
					}
				}
			}
		}
		pinned, err := s.BackendMisdelivered(i)
		if err != nil {
			t.Fatal(err)
		}
		var p uint64
		for k, c := range pinned {
			if k.String() == vip {
				p = c.Packets
			}
		}
		if p != scraped {
			t.Errorf("%s: /metrics says %d misdelivered, the pinned counters %d", h.Name, scraped, p)
		}
		total += p
	}
	return total
}

// BackendMisdelivered reads backend i's pinned misdelivery counters.
func (s *sandbox) BackendMisdelivered(i int) (map[dataplane.VIPKey]dataplane.Counter, error) {
	return dataplane.ReadMisdelivered(s.pinDir(s.fleet.Backends[i]))
}
