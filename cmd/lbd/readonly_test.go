package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lbdproj/lbd/internal/daemon"
)

// validate and status write a VIP as address:port/protocol, an IPv6 address in brackets
// (2001:db8::53:0 would be another address).
func TestVIPAddressesPrinted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v6.yaml")
	cfg := `node: {interface: eth0}
vips:
  - name: dns6
    address: 2001:db8::53
    port: 53
    protocol: udp
    health: {type: none}
    backends: [{address: "2001:db8::1:11"}]
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := newEnv()
	e.stdout, e.stderr = &stdout, &stderr
	if code := run(context.Background(), e, []string{"validate", path}); code != exitOK {
		t.Fatalf("validate: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "dns6  [2001:db8::53]:53/udp") {
		t.Errorf("validate:\n%s", stdout.String())
	}

	var out bytes.Buffer
	printStatus(&out, daemon.Status{VIPs: []daemon.VIPStatus{
		{Name: "dns6", Address: "2001:db8::53", Port: 53, Protocol: "udp"},
		{Name: "web", Address: "198.18.0.10", Port: 80, Protocol: "tcp"},
	}})
	for _, want := range []string{"VIP dns6  [2001:db8::53]:53/udp  ", "VIP web  198.18.0.10:80/tcp  "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
}
