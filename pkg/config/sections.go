package config

import (
	"encoding/hex"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/consistenthash"
	"github.com/lbdproj/lbd/pkg/health"
	"gopkg.in/yaml.v3"
)

var (
	vipNameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	methodRE   = regexp.MustCompile(`^[A-Z]+$`)
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)
)

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
	f := d.mapping(root, "", "node", "cluster", "vips")
	if f == nil {
		return c
	}
	if f.has("node") {
		c.Node = d.node(f.sub("node", "interface", "pin_dir", "hash_seed", "encap_source", "encap_source6", "api_addr", "name"))
	} else {
		f.missing("node")
	}
	if f.has("cluster") {
		c.Cluster = d.cluster(f.sub("cluster", "bind", "join", "secret_file", "quorum"))
	}
	c.VIPs = d.vips(f)
	return c
}

func (d *decoder) node(f *fields) Node {
	node := Node{PinDir: DefaultPinDir, HashSeed: DefaultHashSeed, APIAddr: netip.MustParseAddrPort(DefaultAPIAddr)}
	if f == nil {
		return node
	}
	if n, s, ok := f.scalar("interface"); ok {
		if msg := checkIfname(s); msg != "" {
			d.errorf(n, "node.interface", "%q %s", s, msg)
		}
		node.Interface = s
	} else if !f.has("interface") {
		f.missing("interface")
	}
	if n, s, ok := f.scalar("pin_dir"); ok {
		if !filepath.IsAbs(s) {
			d.errorf(n, "node.pin_dir", "%q is not an absolute path", s)
		}
		node.PinDir = filepath.Clean(s)
	}
	if n, s, ok := f.scalar("hash_seed"); ok {
		v, err := parseSeed(s)
		if err != nil {
			d.errorf(n, "node.hash_seed", "%q is not a 32-bit unsigned integer (decimal or 0x hex)", s)
		}
		node.HashSeed = v
	}
	if a, n, ok := f.addr("encap_source"); ok {
		if !a.Is4() {
			d.errorf(n, "node.encap_source", "%s is not an IPv4 address (IPv6 goes in encap_source6)", a)
		}
		node.EncapSource = a
	}
	if a, n, ok := f.addr("encap_source6"); ok {
		if !a.Is6() {
			d.errorf(n, "node.encap_source6", "%s is not an IPv6 address (IPv4 goes in encap_source)", a)
		}
		node.EncapSource6 = a
	}
	if n, s, ok := f.scalar("api_addr"); ok {
		ap, err := netip.ParseAddrPort(s)
		switch {
		case err != nil || ap.Addr().Zone() != "":
			d.errorf(n, "node.api_addr", "%q is not an IP:port address (e.g. 127.0.0.1:9177 or [::1]:9177)", s)
		case ap.Port() == 0:
			d.errorf(n, "node.api_addr", "%q: port 0 is not allowed", s)
		case !ap.Addr().IsLoopback():
			d.warnf(n, "node.api_addr", "%s is not a loopback address: the status API and /metrics have no authentication", s)
		}
		node.APIAddr = ap
	}
	if n, s, ok := f.scalar("name"); ok {
		if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			d.errorf(n, "node.name", "%q must be non-empty and have no spaces or control characters", s)
		}
		node.Name = s
	} else {
		h, err := os.Hostname()
		if err != nil || h == "" {
			d.errorf(f.node, "node.name", "not set, and the hostname is unknown (%v): set node.name", err)
		}
		node.Name = h
	}
	return node
}

// checkIfname mirrors the kernel's dev_valid_name.
func checkIfname(s string) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > 15:
		return "is longer than 15 bytes, the kernel's limit for interface names"
	case s == "." || s == "..":
		return "is not an interface name"
	case strings.ContainsAny(s, "/:") || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return "is not an interface name: it has '/', ':', a space or a control character"
	}
	return ""
}

// parseSeed accepts a decimal or 0x-prefixed hexadecimal uint32.
func parseSeed(s string) (uint32, error) {
	var v uint64
	var err error
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		v, err = strconv.ParseUint(h, 16, 32)
	} else {
		v, err = strconv.ParseUint(s, 10, 32)
	}
	return uint32(v), err
}

// addr parses an IP address field. Zones, IPv4-mapped IPv6 addresses and addresses that cannot
// be a host's (unspecified, loopback, multicast) are refused.
func (f *fields) addr(name string) (netip.Addr, *yaml.Node, bool) {
	n, s, ok := f.scalar(name)
	if !ok {
		return netip.Addr{}, nil, false
	}
	path := join(f.path, name)
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		f.d.errorf(n, path, "%q is not an IP address", s)
	case a.Zone() != "":
		f.d.errorf(n, path, "%q: an IPv6 zone is not allowed here", s)
	case a.Is4In6():
		f.d.errorf(n, path, "%s is an IPv4-mapped IPv6 address: write %s", s, a.Unmap())
	case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		f.d.errorf(n, path, "%s is not a unicast host address", s)
	default:
		return a, n, true
	}
	return netip.Addr{}, nil, false
}

func (d *decoder) cluster(f *fields) *Cluster {
	c := &Cluster{Bind: netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultClusterPort), Quorum: DefaultQuorum}
	if f == nil {
		return c
	}
	if n, s, ok := f.scalar("bind"); ok {
		if ap, msg := parseBind(s); msg != "" {
			d.errorf(n, "cluster.bind", "%q %s", s, msg)
		} else {
			c.Bind = ap
		}
	}
	port := c.Bind.Port()
	if items, ok := f.list("join"); ok {
		for i, it := range items {
			it = resolve(it)
			path := index("cluster.join", i)
			if it.Kind != yaml.ScalarNode {
				d.errorf(it, path, "expected host or host:port, got %s", kindName(it))
				continue
			}
			hp, msg := parseJoin(it.Value, port)
			if msg != "" {
				d.errorf(it, path, "%q %s", it.Value, msg)
				continue
			}
			c.Join = append(c.Join, hp)
		}
	}
	if n, s, ok := f.scalar("secret_file"); ok {
		if s == "" {
			d.errorf(n, "cluster.secret_file", "is empty")
		}
		c.SecretFile = s
	} else {
		d.warnf(f.node, "cluster", "no secret_file: gossip between LB nodes is neither encrypted nor authenticated")
	}
	oneOf(f, "quorum", &c.Quorum, cluster.Quorums()...)
	return c
}

// parseBind accepts IP, IP:port or :port; memberlist binds to an address, not a name.
func parseBind(s string) (netip.AddrPort, string) {
	if a, err := netip.ParseAddr(s); err == nil {
		s = netip.AddrPortFrom(a, DefaultClusterPort).String()
	} else if strings.HasPrefix(s, ":") {
		s = "0.0.0.0" + s
	}
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil || ap.Addr().Zone() != "":
		return ap, "is not an IP address, IP:port or :port"
	case ap.Port() == 0:
		return ap, "needs a port other than 0: the other nodes must know where to join"
	}
	return ap, ""
}

// parseJoin accepts host or host:port, with host an IP address or a DNS name, and adds the
// default port.
func parseJoin(s string, port uint16) (string, string) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "", "is not host or host:port: an IPv6 zone is not allowed"
		}
		return netip.AddrPortFrom(a, port).String(), ""
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		host, p = s, strconv.Itoa(int(port))
	}
	if v, err := strconv.ParseUint(p, 10, 16); err != nil || v == 0 {
		return "", "has no valid port (1..65535)"
	}
	if _, err := netip.ParseAddr(host); err != nil && !hostnameRE.MatchString(host) {
		return "", "is not host or host:port"
	}
	return net.JoinHostPort(host, p), ""
}

type vipKey struct {
	addr  netip.Addr
	port  uint16
	proto uint8
}

func (d *decoder) vips(root *fields) []VIP {
	items, ok := root.list("vips")
	if !ok {
		if !root.has("vips") {
			d.warnf(root.node, "vips", "no VIPs: every packet is passed to the host")
		}
		return nil
	}
	if len(items) == 0 {
		d.warnf(root.m["vips"].val, "vips", "no VIPs: every packet is passed to the host")
	}
	type seen struct {
		i   int
		pos Position
	}
	names := map[string]seen{}
	keys := map[vipKey]seen{}
	var vips []VIP
	for i, it := range items {
		path := index("vips", i)
		v, r := d.vip(it, path)
		if r.name != nil {
			if prev, ok := names[v.Name]; ok {
				d.errorf(r.name, path+".name", "%q is already the name of vips[%d] (%s)", v.Name, prev.i, prev.pos)
			} else {
				names[v.Name] = seen{i, d.pos(r.name)}
			}
		}
		if r.keyOK {
			k := vipKey{v.Address, v.Port, v.Proto}
			if prev, ok := keys[k]; ok {
				d.errorf(resolve(it), path, "%s/%s is already served by vips[%d] (%s)",
					netip.AddrPortFrom(v.Address, v.Port), v.Protocol, prev.i, prev.pos)
			} else {
				keys[k] = seen{i, v.Pos}
			}
		}
		vips = append(vips, v)
	}
	at := root.m["vips"].key
	if len(vips) > MaxVIPs {
		d.errorf(at, "vips", "%d VIPs are more than the data path holds (%d)", len(vips), MaxVIPs)
	}
	pairs := 0
	for _, v := range vips {
		pairs += len(v.Backends)
	}
	if pairs > MaxBackends {
		d.errorf(at, "vips", "%d backends over all VIPs are more than the data path holds (%d; a backend behind two VIPs counts twice)", pairs, MaxBackends)
	}
	return vips
}

// vipRefs carries what the cross-VIP checks need beyond the VIP itself.
type vipRefs struct {
	name  *yaml.Node // nil when the name is missing or bad
	keyOK bool       // address, port and protocol are all valid
}

func (d *decoder) vip(n *yaml.Node, path string) (VIP, vipRefs) {
	n = resolve(n)
	v := VIP{Protocol: "tcp", Proto: 6, RingSize: DefaultRingSize, Encap: DefaultEncap, Pos: d.pos(n)}
	var r vipRefs
	f := d.mapping(n, path, "name", "address", "port", "protocol", "ring_size", "algorithm", "encap", "backends", "health")
	if f == nil {
		return v, r
	}
	if n, s, ok := f.scalar("name"); ok {
		switch {
		case !vipNameRE.MatchString(s):
			d.errorf(n, path+".name", "%q is not a VIP name: lowercase letters, digits, '_' and '-', starting with a letter or digit", s)
		case len(s) > 63:
			d.errorf(n, path+".name", "%q is longer than 63 characters", s)
		default:
			r.name = n
		}
		v.Name = s
	} else if !f.has("name") {
		f.missing("name")
	}
	addrOK, portOK, protoOK := false, false, true
	if a, _, ok := f.addr("address"); ok {
		v.Address, addrOK = a, true
	} else if !f.has("address") {
		f.missing("address")
	}
	if f.port("port", 0, &v.Port) {
		portOK = true
	} else if !f.has("port") {
		f.missing("port")
	}
	if f.has("protocol") {
		protoOK = oneOf(f, "protocol", &v.Protocol, "tcp", "udp")
	}
	if v.Protocol == "udp" {
		v.Proto = 17
	}
	r.keyOK = addrOK && portOK && protoOK
	if n, ok := f.get("ring_size"); ok {
		if size, ok := f.uint("ring_size", 2, MaxRingSize); ok {
			v.RingSize = uint32(size)
			if !consistenthash.IsPrime(uint32(size)) {
				d.errorf(n, path+".ring_size", "%d is not prime, which Maglev needs (nearest primes: %d and %d)",
					size, consistenthash.PrevPrime(uint32(size)), consistenthash.NextPrime(uint32(size)))
			}
		}
	}
	oneOf(f, "algorithm", &v.Algorithm, consistenthash.Algorithms()...)
	oneOf(f, "encap", &v.Encap, EncapIPIP, EncapGUE)
	v.Backends = d.backends(f, path, v, addrOK)
	v.Health = d.health(f, path, v, portOK)
	return v, r
}

func (d *decoder) backends(f *fields, vipPath string, v VIP, addrOK bool) []Backend {
	items, ok := f.list("backends")
	if !ok {
		if !f.has("backends") {
			f.missing("backends")
		}
		return nil
	}
	at := f.m["backends"].key
	if len(items) == 0 {
		d.errorf(at, vipPath+".backends", "is empty: a VIP needs at least one backend")
		return nil
	}
	type first struct {
		i   int
		pos Position
	}
	var bs []Backend
	seen := map[netip.Addr]first{}
	active := 0
	for i, it := range items {
		path := index(vipPath+".backends", i)
		it = resolve(it)
		b := Backend{Weight: 1, Pos: d.pos(it)}
		bf := d.mapping(it, path, "address", "weight")
		if bf == nil {
			continue
		}
		if a, n, ok := bf.addr("address"); ok {
			b.Address = a
			switch prev, dup := seen[a]; {
			case dup:
				d.errorf(n, path+".address", "%s is already backends[%d] (%s)", a, prev.i, prev.pos)
			case addrOK && a == v.Address:
				d.errorf(n, path+".address", "%s is the VIP's own address", a)
			case addrOK && v.Address.Is6() && a.Is4():
				d.errorf(n, path+".address", "%s is IPv4 but the VIP is IPv6: there is no 6in4 encapsulation", a)
			default:
				seen[a] = first{i, b.Pos}
			}
		} else if !bf.has("address") {
			bf.missing("address")
		}
		if w, ok := bf.uint("weight", 0, math.MaxUint32); ok {
			b.Weight = uint32(w)
		}
		if b.Weight > 0 {
			active++
		}
		bs = append(bs, b)
	}
	if len(bs) < len(items) {
		return bs // some backends are unreadable: the counts below would mislead
	}
	if active == 0 {
		d.errorf(at, vipPath+".backends", "every backend has weight 0: no backend can take new flows")
		return bs
	}
	if need := uint64(consistenthash.MinSlotsPerMember) * uint64(active); uint64(v.RingSize) <= need {
		path, n := vipPath+".backends", at
		if e, ok := f.m["ring_size"]; ok {
			path, n = vipPath+".ring_size", e.val
		}
		d.errorf(n, path, "ring_size %d is too small for %d backends with weight > 0: it must exceed %d × %d = %d for an even spread (next prime: %d)",
			v.RingSize, active, consistenthash.MinSlotsPerMember, active, need, nextPrime(need))
	}
	return bs
}

var (
	httpOnly = []string{"path", "host", "method", "expect_status", "expect_body"}
	udpOnly  = []string{"payload", "expect_reply"}
	probing  = []string{"port", "interval", "timeout", "rise", "fall", "through_tunnel"}
)

func (d *decoder) health(vf *fields, vipPath string, v VIP, portOK bool) Health {
	h := Health{Type: DefaultHealthType, Port: v.Port, Interval: health.DefaultInterval, Timeout: health.DefaultTimeout,
		Rise: health.DefaultRise, Fall: health.DefaultFall}
	path := vipPath + ".health"
	if !vf.has("health") {
		if v.Protocol == "udp" {
			d.warnf(vf.node, path, "a udp VIP is probed with a TCP connect by default: set health.type (udp, tcp or none)")
		}
		if v.Port == 0 && portOK {
			d.errorf(vf.node, path+".port", "required: the VIP's port is 0 (all ports), so there is no port to probe (or set health.type: none)")
		}
		return h
	}
	f := vf.sub("health", "type", "port", "path", "host", "method", "expect_status", "expect_body",
		"payload", "expect_reply", "interval", "timeout", "rise", "fall", "through_tunnel")
	if f == nil {
		return h
	}
	if !oneOf(f, "type", &h.Type, health.TypeTCP, health.TypeHTTP, health.TypeHTTPS, health.TypeUDP, health.TypeNone) && f.has("type") {
		return h // the checks below depend on the type
	}
	if !f.has("type") && v.Protocol == "udp" {
		d.warnf(f.node, path+".type", "a udp VIP is probed with a TCP connect by default: set type (udp, tcp or none)")
	}
	notFor := func(names []string, why string) {
		for _, name := range names {
			if e, ok := f.m[name]; ok {
				d.errorf(e.key, join(path, name), "does not apply to type %q (%s)", h.Type, why)
			}
		}
	}
	if h.Type != health.TypeHTTP && h.Type != health.TypeHTTPS {
		notFor(httpOnly, "only to http and https")
	}
	if h.Type != health.TypeUDP {
		notFor(udpOnly, "only to udp")
	}
	if h.Type == health.TypeNone {
		notFor(probing, "nothing is probed")
		return h
	}
	if f.has("port") {
		f.port("port", 1, &h.Port)
	} else if v.Port == 0 && portOK {
		d.errorf(f.node, path+".port", "required: the VIP's port is 0 (all ports), so there is no port to probe")
	}
	if h.Type == health.TypeHTTP || h.Type == health.TypeHTTPS {
		h.Path, h.Method, h.ExpectStatus = health.DefaultPath, health.DefaultMethod, health.DefaultExpectStatus
		if n, s, ok := f.scalar("path"); ok {
			if _, err := url.ParseRequestURI(s); err != nil || !strings.HasPrefix(s, "/") ||
				strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				d.errorf(n, path+".path", "%q is not a request path: it must start with '/' and have no spaces", s)
			}
			h.Path = s
		}
		if n, s, ok := f.scalar("host"); ok {
			if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }) {
				d.errorf(n, path+".host", "%q is not a Host header value", s)
			}
			h.Host = s
		}
		if n, s, ok := f.scalar("method"); ok {
			if !methodRE.MatchString(s) {
				d.errorf(n, path+".method", "%q is not an HTTP method (e.g. GET, HEAD)", s)
			}
			h.Method = s
		}
		f.int("expect_status", 100, 599, &h.ExpectStatus)
		f.str("expect_body", &h.ExpectBody)
	}
	if h.Type == health.TypeUDP {
		if n, s, ok := f.scalar("payload"); ok {
			var ok bool
			if h.Payload, ok = d.bytes(n, path+".payload", s); ok && h.Payload == "" {
				d.errorf(n, path+".payload", "is empty: a udp probe needs a payload the service answers")
			}
		} else {
			f.missing("payload")
		}
		if n, s, ok := f.scalar("expect_reply"); ok {
			h.ExpectReply, _ = d.bytes(n, path+".expect_reply", s)
		}
	}
	intervalOK := f.duration("interval", 10*time.Millisecond, &h.Interval)
	timeoutOK := f.duration("timeout", time.Millisecond, &h.Timeout)
	if (intervalOK || !f.has("interval")) && (timeoutOK || !f.has("timeout")) && h.Timeout >= h.Interval {
		at, p := f.node, path+".timeout"
		if e, ok := f.m["timeout"]; ok {
			at = e.val
		} else if e, ok := f.m["interval"]; ok {
			at, p = e.val, path+".interval"
		}
		d.errorf(at, p, "timeout %s must be shorter than interval %s", h.Timeout, h.Interval)
	}
	f.int("rise", 1, 100, &h.Rise)
	f.int("fall", 1, 100, &h.Fall)
	f.bool("through_tunnel", &h.ThroughTunnel)
	return h
}

// bytes decodes a probe payload: text as written, or "hex:..." (spaces allowed between digits).
func (d *decoder) bytes(n *yaml.Node, path, s string) (string, bool) {
	h, ok := strings.CutPrefix(s, "hex:")
	if !ok {
		return s, true
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(h), ""))
	if err != nil {
		d.errorf(n, path, "%q is not valid hex after \"hex:\": %v", s, err)
		return "", false
	}
	return string(b), true
}

// nextPrime is the ring size to suggest for need slots: the smallest prime > need (0 past 32
// bits, which no config reaches: it would take 43 million backends behind one VIP).
func nextPrime(need uint64) uint64 {
	if need >= math.MaxUint32 {
		return 0
	}
	return uint64(consistenthash.NextPrime(uint32(need)))
}
