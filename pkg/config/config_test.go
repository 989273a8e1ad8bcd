package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/consistenthash"
)

// base is a small valid config; bad cases below edit it, so line numbers stay readable:
//
//	1 node:
//	2   interface: eth0
//	3 vips:
//	4   - name: web
//	5     address: 198.18.0.10
//	6     port: 80
//	7     backends:
//	8       - address: 198.18.0.11
//	9       - address: 198.18.0.12
const base = `node:
  interface: eth0
vips:
  - name: web
    address: 198.18.0.10
    port: 80
    backends:
      - address: 198.18.0.11
      - address: 198.18.0.12
`

// cmpNetip compares netip values, whose fields are unexported, with ==.
var cmpNetip = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func TestParseGood(t *testing.T) {
	const in = `node:
  interface: eth1
  name: lb1
  hash_seed: 0xdeadbeef
  encap_source: 198.18.0.2
  encap_source6: 2001:db8::2
cluster:
  bind: 198.18.0.2
  join: [198.18.0.3, "lb4.example:7000", "2001:db8::4"]
  secret_file: gossip.key
vips:
  - name: web
    address: 198.18.0.10
    port: 80
    backends:
      - address: 198.18.0.11
      - address: 198.18.0.12
        weight: 0
  - name: dns6
    address: 2001:db8::53
    port: 0
    protocol: udp
    ring_size: 1009
    algorithm: maglev
    encap: gue
    backends:
      - {address: "2001:db8::1:11", weight: 3}
    health:
      type: udp
      port: 53
      payload: "hex:12 34"
      expect_reply: pong
      interval: 2s
      timeout: 1s
      rise: 3
      fall: 1
      through_tunnel: true
  - name: api
    address: 198.18.0.20
    port: 443
    backends:
      - address: 2001:db8::1:20
    health: {type: https, path: /healthz, expect_status: 204}
`
	c, err := Parse("t.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	pos := func(l, col int) Position { return Position{"t.yaml", l, col} }
	tcp := Health{Type: "tcp", Port: 80, Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2}
	want := &Config{
		Node: Node{
			Interface:         "eth1",
			PinDir:            "/sys/fs/bpf/lbd",
			HashSeed:          0xdeadbeef,
			EncapSource:       netip.MustParseAddr("198.18.0.2"),
			EncapSource6:      netip.MustParseAddr("2001:db8::2"),
			APIAddr:           netip.MustParseAddrPort("127.0.0.1:9177"),
			SynFloodThreshold: DefaultSynFloodThreshold,
			FlowTableSize:     DefaultFlowTableSize,
			XDPMode:           dataplane.XDPAuto,
			Name:              "lb1",
		},
		Cluster: &Cluster{
			Bind:       netip.MustParseAddrPort("198.18.0.2:7946"),
			Join:       []string{"198.18.0.3:7946", "lb4.example:7000", "[2001:db8::4]:7946"},
			SecretFile: "gossip.key",
			Quorum:     "majority",
			FlowSync:   true,
		},
		VIPs: []VIP{{
			Name: "web", Address: netip.MustParseAddr("198.18.0.10"), Port: 80, Protocol: "tcp", Proto: 6,
			RingSize: 65537, RingSizeAuto: true, Encap: "ipip",
			Backends: []Backend{
				{Address: netip.MustParseAddr("198.18.0.11"), Weight: 1, Pos: pos(16, 9)},
				{Address: netip.MustParseAddr("198.18.0.12"), Weight: 0, Pos: pos(17, 9)},
			},
			Health: tcp,
			BGP:    VIPBGP{MinHealthy: 1},
			Pos:    pos(12, 5),
		}, {
			Name: "dns6", Address: netip.MustParseAddr("2001:db8::53"), Port: 0, Protocol: "udp", Proto: 17,
			RingSize: 1009, Algorithm: "maglev", Encap: "gue",
			Backends: []Backend{{Address: netip.MustParseAddr("2001:db8::1:11"), Weight: 3, Pos: pos(27, 9)}},
			Health: Health{Type: "udp", Port: 53, Payload: "\x12\x34", ExpectReply: "pong",
				Interval: 2 * time.Second, Timeout: time.Second, Rise: 3, Fall: 1, ThroughTunnel: true},
			BGP: VIPBGP{MinHealthy: 1},
			Pos: pos(19, 5),
		}, {
			Name: "api", Address: netip.MustParseAddr("198.18.0.20"), Port: 443, Protocol: "tcp", Proto: 6,
			RingSize: 65537, RingSizeAuto: true, Encap: "ipip",
			Backends: []Backend{{Address: netip.MustParseAddr("2001:db8::1:20"), Weight: 1, Pos: pos(42, 9)}},
			Health: Health{Type: "https", Port: 443, Path: "/healthz", Method: "GET", ExpectStatus: 204,
				Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2},
			BGP: VIPBGP{MinHealthy: 1},
			Pos: pos(38, 5),
		}},
	}
	if diff := cmp.Diff(want, c, cmpNetip...); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
	if v := vipNamed(c, "dns6"); v == nil || v.Port != 0 {
		t.Errorf("vip dns6 = %v", v)
	}
	if v := vipNamed(c, "nope"); v != nil {
		t.Errorf("vip nope = %v, want none", v)
	}
}

// vipNamed returns c's VIP with the given name, or nil.
func vipNamed(c *Config, name string) *VIP {
	if i := slices.IndexFunc(c.VIPs, func(v VIP) bool { return v.Name == name }); i >= 0 {
		return &c.VIPs[i]
	}
	return nil
}

func TestDefaults(t *testing.T) {
	c, err := Parse("t.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	n := c.Node
	if n.PinDir != DefaultPinDir || n.HashSeed != 0x6c62640a || n.APIAddr != netip.MustParseAddrPort("127.0.0.1:9177") ||
		n.Name != host || n.EncapSource.IsValid() || n.EncapSource6.IsValid() {
		t.Errorf("node defaults: %+v", n)
	}
	if c.Cluster != nil {
		t.Errorf("cluster = %+v, want nil", c.Cluster)
	}
	v := c.VIPs[0]
	if v.Protocol != "tcp" || v.Proto != 6 || v.RingSize != 65537 || v.Algorithm != "" || v.Encap != "ipip" ||
		v.Backends[0].Weight != 1 {
		t.Errorf("vip defaults: %+v", v)
	}
	want := Health{Type: "tcp", Port: 80, Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2}
	if v.Health != want {
		t.Errorf("health defaults: %+v, want %+v", v.Health, want)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %q", c.Warnings)
	}

	c, err = Parse("t.yaml", []byte(strings.Replace(base, "port: 80", "port: 80\n    health: {type: http}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	h := c.VIPs[0].Health
	if h.Path != "/" || h.Method != "GET" || h.ExpectStatus != 200 || h.Port != 80 {
		t.Errorf("http health defaults: %+v", h)
	}

	c, err = Parse("t.yaml", []byte("node: {interface: eth0}\ncluster: {}\nvips: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Cluster{Bind: netip.MustParseAddrPort("0.0.0.0:7946"), Quorum: "majority", FlowSync: true}); !cmp.Equal(*c.Cluster, want, cmpNetip...) {
		t.Errorf("cluster defaults: %+v", c.Cluster)
	}
}

func TestWarnings(t *testing.T) {
	in := strings.Replace(base, "interface: eth0", "interface: eth0\n  api_addr: 198.18.0.2:9177", 1)
	in = strings.Replace(in, "port: 80", "port: 53\n    protocol: udp", 1)
	in += "cluster:\n  join: [198.18.0.3]\n"
	c, err := Parse("t.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"t.yaml:3:13: node.api_addr: 198.18.0.2:9177 is not a loopback address: the status API and /metrics have no authentication",
		"t.yaml:5:5: vips[0].health: a udp VIP is probed with a TCP connect by default: set health.type (udp, tcp or none)",
		"t.yaml:12:1: cluster: no secret_file: gossip between LB nodes is neither encrypted nor authenticated",
	}
	if diff := cmp.Diff(want, c.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		old     string // when set, in is base with old replaced by new
		new     string
		wantErr string // the whole error, one line per problem
	}{{
		name:    "yaml syntax",
		old:     "port: 80",
		new:     "port: [80",
		wantErr: "t.yaml:6: yaml: did not find expected ',' or ']'",
	}, {
		name:    "yaml bad indentation deep in a block",
		old:     "      - address: 198.18.0.12",
		new:     "      - address: 198.18.0.12\n     weight: 2",
		wantErr: "t.yaml:10: yaml: did not find expected key",
	}, {
		name:    "yaml syntax on line 1",
		in:      "node: a: b\n",
		wantErr: "t.yaml:1: yaml: mapping values are not allowed in this context",
	}, {
		name:    "yaml tab",
		old:     "    port: 80",
		new:     "\tport: 80",
		wantErr: "t.yaml:6: yaml: found a tab character that violates indentation",
	}, {
		name:    "unknown anchor",
		old:     "port: 80",
		new:     "port: *p",
		wantErr: "t.yaml:6:11: yaml: unknown anchor 'p' referenced",
	}, {
		name:    "control character",
		old:     "eth0",
		new:     "eth\x010",
		wantErr: "t.yaml:2:17: yaml: control characters are not allowed",
	}, {
		name:    "empty file",
		in:      "# nothing\n",
		wantErr: "t.yaml: config is empty",
	}, {
		name:    "two documents",
		in:      base + "---\nnode: {}\n",
		wantErr: "t.yaml:10:1: a second YAML document: lbd reads one document per file",
	}, {
		name:    "not a mapping",
		in:      "- node\n",
		wantErr: "t.yaml:1:1: expected a mapping, got a list",
	}, {
		name:    "unknown top-level field",
		in:      base + "vip: []\n",
		wantErr: `t.yaml:10:1: vip: unknown field (did you mean "vips"?); allowed: node, cluster, bgp, vips`,
	}, {
		name:    "unknown node field",
		old:     "interface: eth0",
		new:     "interface: eth0\n  iface: eth1",
		wantErr: `t.yaml:3:3: node.iface: unknown field; allowed: interface, pin_dir, hash_seed, encap_source, encap_source6, api_addr, name, syn_flood_threshold, flow_table_size, xdp_mode, encap_source_prefix, encap_source_prefix6, xdp_chain`,
	}, {
		name: "unknown vip field",
		old:  "port: 80",
		new:  "port: 80\n    prot: tcp",
		wantErr: `t.yaml:7:5: vips[0].prot: unknown field (did you mean "port"?); ` +
			`allowed: name, address, port, protocol, ring_size, algorithm, encap, quic, backends, health, bgp`,
	}, {
		name:    "unknown backend field",
		old:     "- address: 198.18.0.12",
		new:     "- address: 198.18.0.12\n        wieght: 2",
		wantErr: `t.yaml:10:9: vips[0].backends[1].wieght: unknown field (did you mean "weight"?); allowed: address, weight, quic_server_id`,
	}, {
		name: "unknown health field",
		old:  "port: 80",
		new:  "port: 80\n    health:\n      type: http\n      status: 204",
		wantErr: `t.yaml:9:7: vips[0].health.status: unknown field; allowed: type, port, path, host, method, ` +
			`expect_status, expect_body, payload, expect_reply, interval, timeout, rise, fall, through_tunnel`,
	}, {
		name:    "field twice",
		old:     "port: 80",
		new:     "port: 80\n    port: 81",
		wantErr: "t.yaml:7:5: vips[0].port: field appears twice (first at t.yaml:6:5)",
	}, {
		name:    "bad IP",
		old:     "198.18.0.12",
		new:     "198.18.0.300",
		wantErr: `t.yaml:9:18: vips[0].backends[1].address: "198.18.0.300" is not an IP address`,
	}, {
		name:    "IPv4-mapped IPv6",
		old:     "198.18.0.12",
		new:     "'::ffff:198.18.0.12'",
		wantErr: `t.yaml:9:18: vips[0].backends[1].address: ::ffff:198.18.0.12 is an IPv4-mapped IPv6 address: write 198.18.0.12`,
	}, {
		name:    "multicast VIP",
		old:     "198.18.0.10",
		new:     "224.0.0.1",
		wantErr: `t.yaml:5:14: vips[0].address: 224.0.0.1 is not a unicast host address`,
	}, {
		name:    "port out of range",
		old:     "port: 80",
		new:     "port: 70000",
		wantErr: "t.yaml:6:11: vips[0].port: 70000 is out of range (0..65535)",
	}, {
		name:    "port not a number",
		old:     "port: 80",
		new:     "port: http",
		wantErr: `t.yaml:6:11: vips[0].port: "http" is not an integer`,
	}, {
		name:    "port missing",
		old:     "    port: 80\n",
		new:     "",
		wantErr: "t.yaml:4:5: vips[0].port: required field is missing",
	}, {
		name:    "bad protocol",
		old:     "port: 80",
		new:     "port: 80\n    protocol: sctp",
		wantErr: `t.yaml:7:15: vips[0].protocol: "sctp" is not one of tcp, udp`,
	}, {
		name:    "missing interface",
		old:     "interface: eth0",
		new:     "pin_dir: /sys/fs/bpf/x",
		wantErr: "t.yaml:1:1: node.interface: required field is missing",
	}, {
		name:    "empty interface",
		old:     "interface: eth0",
		new:     "interface:",
		wantErr: "t.yaml:2:3: node.interface: required field is missing",
	}, {
		name:    "interface name too long",
		old:     "eth0",
		new:     "averyveryverylongname",
		wantErr: `t.yaml:2:14: node.interface: "averyveryverylongname" is longer than 15 bytes, the kernel's limit for interface names`,
	}, {
		name:    "missing node",
		in:      "vips: []\n",
		wantErr: "t.yaml:1:1: node: required field is missing",
	}, {
		name:    "relative pin_dir",
		old:     "interface: eth0",
		new:     "interface: eth0\n  pin_dir: bpf/lbd",
		wantErr: `t.yaml:3:12: node.pin_dir: "bpf/lbd" is not an absolute path`,
	}, {
		name:    "bad hash seed",
		old:     "interface: eth0",
		new:     "interface: eth0\n  hash_seed: 0x1ffffffff",
		wantErr: `t.yaml:3:14: node.hash_seed: "0x1ffffffff" is not a 32-bit unsigned integer (decimal or 0x hex)`,
	}, {
		name:    "negative syn_flood_threshold",
		old:     "interface: eth0",
		new:     "interface: eth0\n  syn_flood_threshold: -1",
		wantErr: `t.yaml:3:24: node.syn_flood_threshold: "-1" is not a count of new flows per second per CPU (0 turns the guard off)`,
	}, {
		name:    "flow table too small",
		old:     "interface: eth0",
		new:     "interface: eth0\n  flow_table_size: 100",
		wantErr: `t.yaml:3:20: node.flow_table_size: "100" is not a number of flows from 4096 to 4294967295`,
	}, {
		name:    "unknown xdp mode",
		old:     "interface: eth0",
		new:     "interface: eth0\n  xdp_mode: driver",
		wantErr: `t.yaml:3:13: node.xdp_mode: "driver" is not an XDP mode: auto, native, generic or offload`,
	}, {
		name:    "encap source prefix too long",
		old:     "interface: eth0",
		new:     "interface: eth0\n  encap_source_prefix: 198.18.128.0/31",
		wantErr: `t.yaml:3:24: node.encap_source_prefix: "198.18.128.0/31" is not an IPv4 prefix from /8 to /30`,
	}, {
		name:    "xdp chain without a slot",
		old:     "interface: eth0",
		new:     "interface: eth0\n  xdp_chain:\n    prog_array: /sys/fs/bpf/root/progs",
		wantErr: `t.yaml:3:3: node.xdp_chain.slot: required field is missing`,
	}, {
		name:    "quic over tcp",
		in:      base + "    quic: true\n",
		wantErr: `t.yaml:10:11: vips[0].quic: QUIC runs over UDP: set protocol: udp`,
	}, {
		name:    "IPv6 encap_source",
		old:     "interface: eth0",
		new:     "interface: eth0\n  encap_source: 2001:db8::2",
		wantErr: `t.yaml:3:17: node.encap_source: 2001:db8::2 is not an IPv4 address (IPv6 goes in encap_source6)`,
	}, {
		name: "duplicate VIP",
		in: base + `  - name: web2
    address: 198.18.0.10
    port: 80
    backends: [{address: 198.18.0.13}]
`,
		wantErr: "t.yaml:10:5: vips[1]: 198.18.0.10:80/tcp is already served by vips[0] (t.yaml:4:5)",
	}, {
		name: "duplicate VIP name",
		in: base + `  - name: web
    address: 198.18.0.10
    port: 443
    backends: [{address: 198.18.0.13}]
`,
		wantErr: `t.yaml:10:11: vips[1].name: "web" is already the name of vips[0] (t.yaml:4:11)`,
	}, {
		name:    "bad VIP name",
		old:     "name: web",
		new:     "name: Web",
		wantErr: `t.yaml:4:11: vips[0].name: "Web" is not a VIP name: lowercase letters, digits, '_' and '-', starting with a letter or digit`,
	}, {
		name:    "duplicate backend",
		old:     "198.18.0.12",
		new:     "198.18.0.11",
		wantErr: "t.yaml:9:18: vips[0].backends[1].address: 198.18.0.11 is already backends[0] (t.yaml:8:9)",
	}, {
		name: "duplicate backend after a bad one",
		old:  "      - address: 198.18.0.12",
		new:  "      - 198.18.0.12\n      - address: 198.18.0.11",
		wantErr: `t.yaml:9:9: vips[0].backends[1]: expected a mapping, got "198.18.0.12"` + "\n" +
			"t.yaml:10:18: vips[0].backends[2].address: 198.18.0.11 is already backends[0] (t.yaml:8:9)",
	}, {
		name:    "empty backends",
		in:      strings.SplitAfter(base, "port: 80\n")[0] + "    backends: []\n",
		wantErr: "t.yaml:7:5: vips[0].backends: is empty: a VIP needs at least one backend",
	}, {
		name:    "missing backends",
		in:      strings.SplitAfter(base, "port: 80\n")[0],
		wantErr: "t.yaml:4:5: vips[0].backends: required field is missing",
	}, {
		name: "all weights zero",
		in: strings.SplitAfter(base, "port: 80\n")[0] + `    backends:
      - {address: 198.18.0.11, weight: 0}
      - {address: 198.18.0.12, weight: 0}
`,
		wantErr: "t.yaml:7:5: vips[0].backends: every backend has weight 0: no backend can take new flows",
	}, {
		name:    "negative weight",
		old:     "- address: 198.18.0.12",
		new:     "- address: 198.18.0.12\n        weight: -1",
		wantErr: "t.yaml:10:17: vips[0].backends[1].weight: -1 is out of range (0..4294967295)",
	}, {
		name:    "weight too big",
		old:     "- address: 198.18.0.12",
		new:     "- address: 198.18.0.12\n        weight: 4294967296",
		wantErr: "t.yaml:10:17: vips[0].backends[1].weight: 4294967296 is out of range (0..4294967295)",
	}, {
		name:    "non-prime ring",
		old:     "port: 80",
		new:     "port: 80\n    ring_size: 65536",
		wantErr: "t.yaml:7:16: vips[0].ring_size: 65536 is not prime, which Maglev needs (nearest primes: 65521 and 65537)",
	}, {
		name:    "unknown algorithm",
		old:     "port: 80",
		new:     "port: 80\n    algorithm: ketama",
		wantErr: `t.yaml:7:16: vips[0].algorithm: "ketama" is not one of rendezvous, maglev, rendezvous-slack`,
	}, {
		name:    "unknown encap",
		old:     "port: 80",
		new:     "port: 80\n    encap: vxlan",
		wantErr: `t.yaml:7:12: vips[0].encap: "vxlan" is not one of ipip, gue`,
	}, {
		name: "ring too small",
		old:  "port: 80",
		new:  "port: 80\n    ring_size: 199",
		wantErr: "t.yaml:7:16: vips[0].ring_size: ring_size 199 is too small for 2 backends with weight > 0: " +
			"it must exceed 100 × 2 = 200 for an even spread (next prime: 211; without ring_size lbd picks 65537)",
	}, {
		name:    "bad duration",
		old:     "port: 80",
		new:     "port: 80\n    health:\n      interval: 1",
		wantErr: `t.yaml:8:17: vips[0].health.interval: "1" is not a duration (e.g. 500ms, 1s, 1m30s)`,
	}, {
		name:    "timeout not below interval",
		old:     "port: 80",
		new:     "port: 80\n    health:\n      interval: 1s\n      timeout: 1s",
		wantErr: "t.yaml:9:16: vips[0].health.timeout: timeout 1s must be shorter than interval 1s",
	}, {
		name:    "default timeout not below interval",
		old:     "port: 80",
		new:     "port: 80\n    health: {interval: 200ms}",
		wantErr: "t.yaml:7:24: vips[0].health.interval: timeout 500ms must be shorter than interval 200ms",
	}, {
		name:    "rise zero",
		old:     "port: 80",
		new:     "port: 80\n    health: {rise: 0}",
		wantErr: "t.yaml:7:20: vips[0].health.rise: 0 is out of range (1..100)",
	}, {
		name:    "http field on a tcp check",
		old:     "port: 80",
		new:     "port: 80\n    health: {path: /healthz}",
		wantErr: `t.yaml:7:14: vips[0].health.path: does not apply to type "tcp" (only to http and https)`,
	}, {
		name:    "udp check without payload",
		old:     "port: 80",
		new:     "port: 80\n    protocol: udp\n    health: {type: udp}",
		wantErr: "t.yaml:8:5: vips[0].health.payload: required field is missing",
	}, {
		name:    "bad hex payload",
		old:     "port: 80",
		new:     "port: 80\n    health: {type: udp, payload: 'hex:zz'}",
		wantErr: `t.yaml:7:34: vips[0].health.payload: "hex:zz" is not valid hex after "hex:": encoding/hex: invalid byte: U+007A 'z'`,
	}, {
		name:    "wildcard VIP without health port",
		old:     "port: 80",
		new:     "port: 0",
		wantErr: "t.yaml:4:5: vips[0].health.port: required: the VIP's port is 0 (all ports), so there is no port to probe (or set health.type: none)",
	}, {
		name: "v6 VIP with v4 backend",
		old:  "198.18.0.10",
		new:  "2001:db8::10",
		wantErr: "t.yaml:8:18: vips[0].backends[0].address: 198.18.0.11 is IPv4 but the VIP is IPv6: there is no 6in4 encapsulation\n" +
			"t.yaml:9:18: vips[0].backends[1].address: 198.18.0.12 is IPv4 but the VIP is IPv6: there is no 6in4 encapsulation",
	}, {
		name:    "quorum",
		in:      base + "cluster: {secret_file: k, quorum: most}\n",
		wantErr: `t.yaml:10:35: cluster.quorum: "most" is not one of majority, any, all`,
	}, {
		name:    "flow_sync not a boolean",
		in:      base + "cluster: {secret_file: k, flow_sync: yes}\n",
		wantErr: `t.yaml:10:38: cluster.flow_sync: "yes" is not a boolean (true or false)`,
	}, {
		name:    "cluster bind name",
		in:      base + "cluster: {secret_file: k, bind: 'lb1:7946'}\n",
		wantErr: `t.yaml:10:33: cluster.bind: "lb1:7946" is not an IP address, IP:port or :port`,
	}, {
		name: "several errors, in file order",
		in: `node:
  pin_dir: relative
vips:
  - name: web
    address: 198.18.0.300
    port: -1
    backends:
      - address: 198.18.0.11
        weight: x
`,
		wantErr: `t.yaml:1:1: node.interface: required field is missing
t.yaml:2:12: node.pin_dir: "relative" is not an absolute path
t.yaml:5:14: vips[0].address: "198.18.0.300" is not an IP address
t.yaml:6:11: vips[0].port: -1 is out of range (0..65535)
t.yaml:9:17: vips[0].backends[0].weight: "x" is not an integer`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if tc.old != "" {
				if !strings.Contains(base, tc.old) {
					t.Fatalf("base has no %q", tc.old)
				}
				in = strings.Replace(base, tc.old, tc.new, 1)
			}
			c, err := Parse("t.yaml", []byte(in))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if got := err.Error(); got != tc.wantErr {
				t.Errorf("error:\n got %s\nwant %s", got, tc.wantErr)
			}
			var e *Error
			if !errors.As(err, &e) || !strings.HasPrefix(e.Pos.String(), "t.yaml") {
				t.Errorf("errors.As(*Error) = %v, %v", e, err)
			}
		})
	}
}

func TestErrorCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("node: {interface: eth0}\nvips:\n")
	for i := range 30 {
		fmt.Fprintf(&b, "  - {name: v%d, address: 198.18.1.%d, port: 80, backends: [{address: bad}]}\n", i, i+1)
	}
	_, err := Parse("t.yaml", []byte(b.String()))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 || lines[maxErrors] != "t.yaml: 10 more errors not shown" {
		t.Errorf("got %d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestAliasesAndMerge(t *testing.T) {
	in := `node: {interface: eth0}
x-health: &h {type: http, path: /healthz}
vips:
  - name: a
    address: 198.18.0.10
    port: 80
    backends: &bs [{address: 198.18.0.11}, {address: 198.18.0.12}]
    health: *h
  - name: b
    address: 198.18.0.10
    port: 8080
    backends: *bs
    health:
      <<: *h
      port: 8081
`
	_, err := Parse("t.yaml", []byte(in))
	want := `t.yaml:2:1: x-health: unknown field; allowed: node, cluster, bgp, vips`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	in = strings.Replace(in, "x-health: &h {type: http, path: /healthz}\n", "", 1)
	in = strings.Replace(in, "    health: *h\n", "    health: &h {type: http, path: /healthz}\n", 1)
	c, err := Parse("t.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	a, b := vipNamed(c, "a"), vipNamed(c, "b")
	if len(b.Backends) != 2 || b.Health.Path != "/healthz" || b.Health.Port != 8081 || a.Health.Port != 80 {
		t.Errorf("a = %+v\nb = %+v", a, b)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "lbd.yaml")
	if err := os.WriteFile(p, []byte(base+"cluster: {secret_file: gossip.key}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "gossip.key"); c.Cluster.SecretFile != want {
		t.Errorf("secret_file = %q, want %q", c.Cluster.SecretFile, want)
	}
	if err := os.WriteFile(p, []byte("node: {interface: eth0, pin: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+":1:25: node.pin: unknown field") {
		t.Errorf("err = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestShippedConfigs(t *testing.T) {
	for _, name := range []string{"demo.yaml", "example.yaml"} {
		c, err := Load(filepath.Join("..", "..", "configs", name))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Warnings) > 0 {
			t.Errorf("%s: warnings %q", name, c.Warnings)
		}
	}
}

// FuzzParse checks that Parse never panics and that every error line names the file.
func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	for _, name := range []string{"demo.yaml", "example.yaml"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "configs", name)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err == nil {
			_ = c.Digest()
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "f.yaml:") && !strings.HasPrefix(line, "f.yaml: ") {
				t.Errorf("unpositioned error line %q", line)
			}
		}
	})
}

func TestLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("node: {interface: eth0}\nvips:\n")
	ring := consistenthash.NextPrime(820000)
	for v := range 2 {
		fmt.Fprintf(&b, "  - name: v%d\n    address: 198.18.0.%d\n    port: 80\n    ring_size: %d\n    backends:\n", v, v+1, ring)
		for i := range 8200 {
			fmt.Fprintf(&b, "      - address: 198.19.%d.%d\n", i/250, i%250+1)
		}
	}
	start := time.Now()
	_, err := Parse("t.yaml", []byte(b.String()))
	t.Logf("parsed 16400 backends in %v", time.Since(start))
	want := "t.yaml:2:1: vips: 16400 backends over all VIPs are more than the data path holds (16383; a backend behind two VIPs counts twice)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}

	_, err = Parse("t.yaml", []byte(strings.Replace(base, "port: 80", "port: 80\n    ring_size: 1048583", 1)))
	want = "t.yaml:7:16: vips[0].ring_size: 1048583 is out of range (2..1048573)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

// The cluster section comes out typed: bind as an address and port (its forms IP, IP:port
// and :port), join with the bind port filled in, quorum as cluster.Quorum.
func TestClusterSection(t *testing.T) {
	for _, tc := range []struct {
		in       string
		bind     string
		join     []string
		quorum   cluster.Quorum
		wantWarn bool
	}{
		{in: "{secret_file: k}", bind: "0.0.0.0:7946", quorum: cluster.QuorumMajority},
		{in: "{secret_file: k, bind: 198.18.0.2, quorum: any}", bind: "198.18.0.2:7946", quorum: cluster.QuorumAny},
		{in: "{secret_file: k, flow_sync: false}", bind: "0.0.0.0:7946", quorum: cluster.QuorumMajority},
		{in: "{secret_file: k, flow_sync: true}", bind: "0.0.0.0:7946", quorum: cluster.QuorumMajority},
		{in: "{secret_file: k, bind: ':7000', join: [198.18.0.3], quorum: all}", bind: "0.0.0.0:7000",
			join: []string{"198.18.0.3:7000"}, quorum: cluster.QuorumAll},
		{in: "{bind: '[2001:db8::2]:7001', join: ['lb2.example']}", bind: "[2001:db8::2]:7001",
			join: []string{"lb2.example:7001"}, quorum: cluster.QuorumMajority, wantWarn: true},
	} {
		c, err := Parse("t.yaml", []byte(base+"cluster: "+tc.in+"\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		cc := c.Cluster
		if cc.FlowSync != !strings.Contains(tc.in, "flow_sync: false") {
			t.Errorf("%s: flow_sync %v", tc.in, cc.FlowSync)
		}
		if cc.Bind != netip.MustParseAddrPort(tc.bind) || !slices.Equal(cc.Join, tc.join) || cc.Quorum != tc.quorum {
			t.Errorf("%s: bind %s, join %q, quorum %q; want %s, %q, %q", tc.in, cc.Bind, cc.Join, cc.Quorum, tc.bind, tc.join, tc.quorum)
		}
		if got := len(c.Warnings) > 0; got != tc.wantWarn {
			t.Errorf("%s: warnings %q", tc.in, c.Warnings)
		}
	}
	for _, in := range []string{"{quorum: ''}", "{quorum: Majority}"} {
		_, err := Parse("t.yaml", []byte(base+"cluster: "+in+"\n"))
		if err == nil || !strings.Contains(err.Error(), "cluster.quorum: ") || !strings.Contains(err.Error(), "is not one of majority, any, all") {
			t.Errorf("%s: err = %v", in, err)
		}
	}
}

// manyBackends is a config with one VIP of n backends (weight 1), ring_size ring unless 0.
func manyBackends(n int, ring uint32) string {
	var b strings.Builder
	b.WriteString("node: {interface: eth0}\nvips:\n  - name: big\n    address: 198.18.0.10\n    port: 80\n")
	if ring != 0 {
		fmt.Fprintf(&b, "    ring_size: %d\n", ring)
	}
	b.WriteString("    backends:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - address: 198.19.%d.%d\n", i/250, i%250+1)
	}
	return b.String()
}

// A VIP without ring_size gets the smallest listed size with room for its backends, a
// 1000-backend VIP included; an explicit ring_size that is too small stays an error.
func TestRingSizeFollowsBackends(t *testing.T) {
	for _, c := range []struct {
		backends int
		want     uint32
	}{{3, 65537}, {655, 65537}, {656, 131071}, {1000, 131071}, {6000, 655373}} {
		cfg, err := Parse("t.yaml", []byte(manyBackends(c.backends, 0)))
		if err != nil {
			t.Fatalf("%d backends: %v", c.backends, err)
		}
		if v := cfg.VIPs[0]; v.RingSize != c.want || !v.RingSizeAuto {
			t.Errorf("%d backends: ring_size %d (auto %v), want %d (auto)", c.backends, v.RingSize, v.RingSizeAuto, c.want)
		}
	}
	cfg, err := Parse("t.yaml", []byte(manyBackends(1000, 1048573)))
	if err != nil {
		t.Fatal(err)
	}
	if v := cfg.VIPs[0]; v.RingSize != 1048573 || v.RingSizeAuto {
		t.Errorf("explicit ring_size: %d (auto %v), want 1048573 as written", v.RingSize, v.RingSizeAuto)
	}

	_, err = Parse("t.yaml", []byte(manyBackends(1000, 65537)))
	want := "t.yaml:6:16: vips[0].ring_size: ring_size 65537 is too small for 1000 backends with weight > 0: it must exceed 100 × 1000 = 100000 for an even spread (next prime: 100003; without ring_size lbd picks 131071)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	_, err = Parse("t.yaml", []byte(manyBackends(10486, 0)))
	want = "t.yaml:6:5: vips[0].backends: 10486 backends with weight > 0 need a ring of more than 100 × 10486 = 1048600 slots, more than the largest the data path holds (1048573): split them over more VIPs"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

// The largest automatic size is the largest ring the data path indexes.
func TestLargestRingSizeIsMax(t *testing.T) {
	s := consistenthash.Sizes()
	if last := s[len(s)-1]; last != MaxRingSize {
		t.Errorf("largest automatic ring size %d, MaxRingSize %d", last, MaxRingSize)
	}
}

func TestQUICServerIDs(t *testing.T) {
	const quic = `node:
  interface: eth0
vips:
  - name: h3
    address: 198.18.0.10
    port: 443
    protocol: udp
    quic: true
    backends:
      - address: 198.18.0.11
        quic_server_id: 1
      - address: 198.18.0.12
        quic_server_id: %s
      - address: 198.18.0.13
    health:
      type: none
`
	c, err := Parse("t.yaml", []byte(fmt.Sprintf(quic, "2")))
	if err != nil {
		t.Fatal(err)
	}
	v := c.VIPs[0]
	if !v.QUIC || v.Backends[0].QUICServerID != 1 || v.Backends[1].QUICServerID != 2 || v.Backends[2].QUICServerID != 0 {
		t.Fatalf("parsed %+v", v)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "t.yaml:14:9: vips[0].backends[2]: no quic_server_id") {
		t.Errorf("warnings %q, want one for the backend without an id", c.Warnings)
	}
	for id, want := range map[string]string{
		"1":     `t.yaml:13:25: vips[0].backends[1].quic_server_id: 1 is already backends[0]'s`,
		"0":     `t.yaml:13:25: vips[0].backends[1].quic_server_id:`,
		"70000": `t.yaml:13:25: vips[0].backends[1].quic_server_id:`,
	} {
		if _, err := Parse("t.yaml", []byte(fmt.Sprintf(quic, id))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("quic_server_id %s: %v, want %q", id, err, want)
		}
	}
	noQUIC := strings.Replace(fmt.Sprintf(quic, "2"), "    quic: true\n", "", 1)
	if _, err := Parse("t.yaml", []byte(noQUIC)); err == nil || !strings.Contains(err.Error(), "quic_server_id: the VIP does not route QUIC by connection id") {
		t.Errorf("server ids without quic: %v", err)
	}
}
