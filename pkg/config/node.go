package config

// The node section: settings local to one LB node.

import (
	"slices"

	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lbdproj/lbd/internal/dataplane"
)

func (d *decoder) node(f *fields) Node {
	node := Node{PinDir: DefaultPinDir, HashSeed: DefaultHashSeed, APIAddr: netip.MustParseAddrPort(DefaultAPIAddr),
		SynFloodThreshold: DefaultSynFloodThreshold, FlowTableSize: DefaultFlowTableSize, XDPMode: dataplane.XDPAuto}
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
	if n, s, ok := f.scalar("syn_flood_threshold"); ok {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			d.errorf(n, "node.syn_flood_threshold", "%q is not a count of new flows per second per CPU (0 turns the guard off)", s)
		}
		node.SynFloodThreshold = uint32(v)
	}
	if n, s, ok := f.scalar("flow_table_size"); ok {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil || uint32(v) < MinFlowTableSize {
			d.errorf(n, "node.flow_table_size", "%q is not a number of flows from %d to %d", s, MinFlowTableSize, uint32(1<<32-1))
		}
		node.FlowTableSize = uint32(v)
	}
	if n, s, ok := f.scalar("xdp_mode"); ok {
		if !slices.Contains(dataplane.XDPModes, dataplane.XDPMode(s)) {
			d.errorf(n, "node.xdp_mode", "%q is not an XDP mode: auto, native, generic or offload", s)
		}
		node.XDPMode = dataplane.XDPMode(s)
	}
	for _, c := range []struct {
		key      string
		v6       bool
		min, max int
		to       *netip.Prefix
	}{{"encap_source_prefix", false, 8, 30, &node.EncapSourcePrefix}, {"encap_source_prefix6", true, 96, 126, &node.EncapSourcePrefix6}} {
		n, s, ok := f.scalar(c.key)
		if !ok {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Is6() != c.v6 || p.Addr().Zone() != "" || p.Bits() < c.min || p.Bits() > c.max {
			fam := "IPv4"
			if c.v6 {
				fam = "IPv6"
			}
			d.errorf(n, "node."+c.key, "%q is not an %s prefix from /%d to /%d", s, fam, c.min, c.max)
			continue
		}
		*c.to = p.Masked()
	}
	if cf := f.sub("xdp_chain", "prog_array", "slot"); cf != nil {
		c := &dataplane.Chain{}
		if n, s, ok := cf.scalar("prog_array"); ok {
			if !filepath.IsAbs(s) {
				d.errorf(n, "node.xdp_chain.prog_array", "%q is not an absolute path (a pinned program array on a bpffs)", s)
			}
			c.ProgArray = filepath.Clean(s)
		} else if !cf.has("prog_array") {
			cf.missing("prog_array")
		}
		if v, ok := cf.uint("slot", 0, 1<<20); ok {
			c.Slot = uint32(v)
		} else if !cf.has("slot") {
			cf.missing("slot")
		}
		node.XDPChain = c
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
