package config

// A VIP's health section: how its backends are probed.

import (
	"encoding/hex"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/lbdproj/lbd/pkg/health"
	"gopkg.in/yaml.v3"
)

var methodRE = regexp.MustCompile(`^[A-Z]+$`)

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
