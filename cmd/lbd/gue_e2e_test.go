package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/configs"
)

// TestEndToEndGUE: the same service with the VIP encapsulated in GUE (IP in UDP).
func TestEndToEndGUE(t *testing.T) {
	cfg := strings.Replace(string(configs.Demo), "    protocol: tcp\n", "    protocol: tcp\n    encap: gue\n", 1)
	if cfg == string(configs.Demo) {
		t.Fatal("demo config changed shape: cannot set encap")
	}
	s := mustSandbox(t, []byte(cfg), 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tl := s.Requests(ctx, 150, 6)
	if tl.Failures != 0 || len(tl.By) != 3 {
		t.Fatalf("%d failures (%v), served by %v", tl.Failures, tl.Errors, tl.By)
	}
	st, decap, _ := s.settled(ctx, t)
	if tx := st.Verdicts["tx"].Packets; tx < 3*150 || decap < tx {
		t.Errorf("LB sent %d GUE packets, backends decapsulated %d", tx, decap)
	}
}
