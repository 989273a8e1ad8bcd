// Package config reads lbd's YAML configuration and validates it, naming file:line:column and
// the field path in every error so an operator can fix a file without guessing.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/consistenthash"
	"github.com/lbdproj/lbd/pkg/health"
	"gopkg.in/yaml.v3"
)

// Defaults, also documented in configs/example.yaml.
const (
	DefaultPinDir   = "/sys/fs/bpf/lbd"
	DefaultHashSeed = uint32(0x6c62640a) // "lbd\n"
	// DefaultSynFloodThreshold: a busy edge node sees thousands of new connections a second
	// on a core, a SYN flood millions; a SYN that goes by the ring unrecorded still reaches
	// the backend the ring names, so erring low costs little
	DefaultSynFloodThreshold = uint32(50_000)
	// DefaultFlowTableSize: 1,048,576 flows per family. An entry costs 88 bytes (IPv4) or
	// 112 (IPv6) of locked kernel memory, so the two tables take about 200 MiB.
	DefaultFlowTableSize = uint32(1 << 20)
	// MinFlowTableSize keeps each CPU's share of a table worth having.
	MinFlowTableSize   = uint32(4096)
	DefaultAPIAddr     = "127.0.0.1:9177"
	DefaultClusterPort = 7946 // cluster.bind's port when it names none; bind defaults to 0.0.0.0
	DefaultQuorum      = cluster.QuorumMajority
	DefaultFlowSync    = true                       // cluster.flow_sync
	DefaultRingSize    = consistenthash.DefaultSize // up to 655 backends with weight > 0; more get a larger size (consistenthash.SizeFor)
	DefaultEncap       = EncapIPIP
	// DefaultHealthType probes a VIP without a health section with a TCP connect. The other
	// health defaults (interval, timeout, rise, fall, and for http the path, method and
	// expected status) are pkg/health's: health.DefaultInterval and the rest.
	DefaultHealthType = health.TypeTCP

	// The data path's limits (bpf/lb_consts.h, through internal/dataplane's generated
	// bindings), checked here so that a file that cannot be applied is refused with a
	// position rather than failing half-way through an apply.
	MaxVIPs     = dataplane.MaxVIPs
	MaxBackends = dataplane.MaxBackends // {VIP, backend} pairs over all VIPs
	// MaxRingSize is the largest ring lbd builds (a prime). Rings are inner maps sized per
	// VIP, so this is not a limit of the data path but of the memory a ring may take:
	// 4 bytes a slot, 4 MiB at this size.
	MaxRingSize = 1048573
	// maxErrors caps how many problems one Parse reports; the rest are counted.
	maxErrors = 20
)

// Config is a validated lbd configuration with every default filled in.
type Config struct {
	Node     Node
	Cluster  *Cluster // nil when the file has no cluster section: the node decides alone
	BGP      *BGP     // nil when the file has no bgp section: the router is set up by hand
	VIPs     []VIP
	Warnings []string // positioned like errors: "file:line:col: path: message"
}

// Node holds the settings local to one LB node. None of them enters Digest except HashSeed,
// which must be equal on every node.
type Node struct {
	Interface    string         // where xdp_lb attaches; required
	PinDir       string         // bpffs directory for pinned maps and links
	HashSeed     uint32         // flow hash seed; the same on every LB node
	EncapSource  netip.Addr     // outer IPv4 source; zero: the interface's first IPv4 address
	EncapSource6 netip.Addr     // outer IPv6 source; zero: the interface's first global IPv6 address
	APIAddr      netip.AddrPort // the status API and /metrics
	// SynFloodThreshold: new flows per second on one CPU above which SYNs go by the ring
	// without entering the flow table (the SYN flood guard); 0 turns the guard off
	SynFloodThreshold uint32
	// FlowTableSize is the entries of each flow table (IPv4, IPv6), shared out among the
	// CPUs; a restart with another size copies the flows into new tables
	FlowTableSize uint32
	// EncapSourcePrefix(6): each flow's outer source picked inside it by the flow hash,
	// for the backends' RSS; invalid: the fixed EncapSource(6)
	EncapSourcePrefix  netip.Prefix
	EncapSourcePrefix6 netip.Prefix
	// XDPChain, when set, runs xdp_lb from a slot of another XDP program's program array
	// (tail-called behind an operator's filter) instead of attaching it to the interface
	XDPChain *dataplane.Chain
	// XDPMode is how xdp_lb is attached: auto (native, else generic), native, generic or
	// offload
	XDPMode dataplane.XDPMode
	Name    string // cluster member name; default os.Hostname()
}

// Cluster configures gossip between LB nodes (hashicorp/memberlist).
type Cluster struct {
	Bind       netip.AddrPort // default 0.0.0.0:7946
	Join       []string       // host:port of other LB nodes (a host may be a DNS name); the port defaults to Bind's
	SecretFile string         // gossip key file; Load makes a relative path relative to the config file
	Quorum     cluster.Quorum // default majority
	// FlowSync shares the flows at risk with the other nodes (pkg/flowsync); default on.
	FlowSync bool
}

// VIP is one virtual service: an address, a port (0 = all ports) and a protocol.
type VIP struct {
	Name     string
	Address  netip.Addr
	Port     uint16 // 0 = all ports
	Protocol string // "tcp" | "udp"
	Proto    uint8  // IP protocol number derived from Protocol: 6 or 17
	RingSize uint32 // prime, > 100 × backends with weight > 0
	// RingSizeAuto: the file names no ring_size, and RingSize is the smallest of
	// consistenthash.Sizes with room for the backends (consistenthash.SizeFor)
	RingSizeAuto bool
	Algorithm    consistenthash.Algorithm // "" = none named: Algorithm.OrDefault picks the ring's
	Encap        Encap
	// QUIC routes short-header QUIC packets by the server id their connection id carries
	// (pkg/quiccid), so a connection survives the client's address or port changing
	QUIC     bool
	Backends []Backend
	Health   Health
	BGP      VIPBGP
	Pos      Position // where the VIP's mapping starts
}

// Encap is how the LB encapsulates a VIP's packets toward its backends.
type Encap string

const (
	EncapIPIP Encap = "ipip" // IP in IP (4in4, 6in6, 4in6)
	EncapGUE  Encap = "gue"  // GUE variant 1 in UDP to port 6080
)

// Backend is one real server behind a VIP.
type Backend struct {
	Address netip.Addr
	Weight  uint32 // 0 = drain: established flows stay, new flows go elsewhere
	// QUICServerID is the server id the backend's QUIC connection ids carry (1-65535,
	// unique in the VIP); 0: none
	QUICServerID uint16
	Pos          Position
}

// Health describes how each backend of a VIP is probed.
type Health struct {
	Type          string // tcp | http | https | udp | none
	Port          uint16 // default: the VIP's port
	Path          string // http(s)
	Host          string // http(s): optional Host header
	Method        string // http(s)
	ExpectStatus  int    // http(s)
	ExpectBody    string // http(s): optional substring of the body
	Payload       string // udp: bytes to send ("hex:..." in YAML is decoded here)
	ExpectReply   string // udp: substring of the reply ("hex:..." decoded); empty: any reply
	Interval      time.Duration
	Timeout       time.Duration // < Interval
	Rise          int           // consecutive successes to become up
	Fall          int           // consecutive failures to become down
	ThroughTunnel bool          // probe VIP:port encapsulated to the backend, as clients reach it
}

// Position is a place in a config file.
type Position struct {
	File         string
	Line, Column int
}

// String returns "file:line:col", leaving out what is unknown.
func (p Position) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Column == 0:
		return p.File + ":" + strconv.Itoa(p.Line)
	}
	return p.File + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Column)
}

// Error is one problem in a config file. Parse returns several of them joined with
// errors.Join; errors.As finds the first.
type Error struct {
	Pos  Position
	Path string // field path, e.g. "vips[0].backends[1].address"; empty for the whole file
	Msg  string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Pos.String() + ": " + e.Msg
	}
	return e.Pos.String() + ": " + e.Path + ": " + e.Msg
}

// Load reads and parses the config file at path. Error messages name the path as given.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	// A relative secret file is relative to the config file, not to lbd's working directory
	// (which is / under systemd).
	if c.Cluster != nil && c.Cluster.SecretFile != "" && !filepath.IsAbs(c.Cluster.SecretFile) {
		c.Cluster.SecretFile = filepath.Join(filepath.Dir(path), c.Cluster.SecretFile)
	}
	return c, nil
}

// Parse parses and validates one YAML document. name is used in error messages only.
func Parse(name string, data []byte) (*Config, error) {
	d := &decoder{file: name}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Pos: Position{File: name}, Msg: "config is empty"}
		}
		return nil, syntaxError(name, data, err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, &Error{Pos: d.pos(&next), Msg: "a second YAML document: lbd reads one document per file"}
	} else if !errors.Is(err, io.EOF) {
		return nil, syntaxError(name, data, err)
	}
	c := d.config(&doc)
	if err := d.err(); err != nil {
		return nil, err
	}
	sortByPos(d.warns)
	for _, w := range d.warns {
		c.Warnings = append(c.Warnings, w.Error())
	}
	return c, nil
}

// config decodes the document's root: the node, cluster, bgp and vips sections.
func (d *decoder) config(doc *yaml.Node) *Config {
	c := &Config{}
	root := doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	if isNull(root) {
		d.errorf(root, "", "config is empty")
		return c
	}
	f := d.mapping(root, "", "node", "cluster", "bgp", "vips")
	if f == nil {
		return c
	}
	if f.has("node") {
		c.Node = d.node(f.sub("node", "interface", "pin_dir", "hash_seed", "encap_source", "encap_source6", "api_addr", "name", "syn_flood_threshold", "flow_table_size", "xdp_mode", "encap_source_prefix", "encap_source_prefix6", "xdp_chain"))
	} else {
		f.missing("node")
	}
	if f.has("cluster") {
		c.Cluster = d.cluster(f.sub("cluster", "bind", "join", "secret_file", "quorum", "flow_sync"))
	}
	if f.has("bgp") {
		c.BGP = d.bgp(f.sub("bgp", "asn", "router_id", "hold_time", "announce_delay", "shutdown_drain", "communities", "med", "peers"))
	}
	c.VIPs = d.vips(f)
	d.checkBGP(c)
	return c
}
