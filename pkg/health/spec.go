package health

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Probe types accepted in Spec.Type.
const (
	TypeTCP   = "tcp"
	TypeHTTP  = "http"
	TypeHTTPS = "https"
	TypeUDP   = "udp"
	TypeNone  = "none"
)

// Defaults applied by Spec.WithDefaults to zero fields. They are lbd's only copy: pkg/config
// fills a VIP's health section from them too.
const (
	DefaultInterval     = time.Second
	DefaultTimeout      = 500 * time.Millisecond
	DefaultRise         = 2
	DefaultFall         = 2
	DefaultMethod       = "GET"
	DefaultPath         = "/"
	DefaultExpectStatus = 200
)

// ErrBadSpec is wrapped by every error Spec.Validate returns.
var ErrBadSpec = errors.New("invalid health check")

// Key identifies one state machine: a backend's service port behind one VIP.
// The same backend behind two VIPs has two independent states.
type Key struct {
	VIP     string     // the VIP's name as the caller spells it, e.g. "198.18.0.10:80/tcp"
	Backend netip.Addr // the backend's address
	Port    uint16     // the backend port this state is about (lbd: the probed port)
}

// String formats the key for logs: "vip backend:port".
func (k Key) String() string {
	return k.VIP + " " + k.backendLabel()
}

// backendLabel is the value of the "backend" metric label: "addr:port", IPv6 bracketed.
func (k Key) backendLabel() string {
	return netip.AddrPortFrom(k.Backend, k.Port).String()
}

// Spec says how to probe a target and how many consecutive results change its state.
type Spec struct {
	Type string // TypeTCP, TypeHTTP, TypeHTTPS, TypeUDP or TypeNone

	// http and https only.
	Path         string // default "/"
	Host         string // Host header and TLS server name; default the target address
	Method       string // default GET
	ExpectStatus int    // default 200
	ExpectBody   string // substring the body must contain; empty: not checked

	// udp only.
	Payload     []byte // datagram sent
	ExpectReply []byte // the reply must contain it; empty: any reply will do

	Interval time.Duration // time between probe starts; default 1s
	Timeout  time.Duration // per probe, at most Interval; default 500ms (or Interval if smaller)
	Rise     int           // consecutive successes for Down → Up; default 2
	Fall     int           // consecutive failures for Up/Unknown → Down; default 2
}

// WithDefaults returns s with its zero fields set to the defaults and Type lowercased.
// Timeout is capped at Interval so a target never has two probes in flight.
func (s Spec) WithDefaults() Spec {
	s.Type = strings.ToLower(s.Type)
	if s.Interval <= 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	s.Timeout = min(s.Timeout, s.Interval)
	if s.Rise <= 0 {
		s.Rise = DefaultRise
	}
	if s.Fall <= 0 {
		s.Fall = DefaultFall
	}
	if s.Type == TypeHTTP || s.Type == TypeHTTPS {
		if s.Method == "" {
			s.Method = DefaultMethod
		}
		if s.Path == "" {
			s.Path = DefaultPath
		}
		if s.ExpectStatus == 0 {
			s.ExpectStatus = DefaultExpectStatus
		}
	}
	return s
}

// Validate reports a spec that cannot be probed. It checks s as given; call it on
// s.WithDefaults() to accept zero fields.
func (s Spec) Validate() error {
	switch s.Type {
	case TypeTCP, TypeUDP, TypeNone:
	case TypeHTTP, TypeHTTPS:
		if _, err := url.ParseRequestURI(s.Path); err != nil || !strings.HasPrefix(s.Path, "/") {
			return fmt.Errorf("%w: path %q must be an absolute path, e.g. /healthz", ErrBadSpec, s.Path)
		}
		if s.ExpectStatus < 100 || s.ExpectStatus > 599 {
			return fmt.Errorf("%w: expect_status %d not in 100..599", ErrBadSpec, s.ExpectStatus)
		}
		if s.Method == "" || strings.ContainsAny(s.Method, " \t\r\n") {
			return fmt.Errorf("%w: method %q", ErrBadSpec, s.Method)
		}
		if strings.ContainsAny(s.Host, " \t\r\n/") {
			return fmt.Errorf("%w: host %q", ErrBadSpec, s.Host)
		}
	default:
		return fmt.Errorf("%w: type %q (want tcp, http, https, udp or none)", ErrBadSpec, s.Type)
	}
	if s.Interval <= 0 || s.Timeout <= 0 {
		return fmt.Errorf("%w: interval %v and timeout %v must be positive", ErrBadSpec, s.Interval, s.Timeout)
	}
	if s.Timeout > s.Interval {
		return fmt.Errorf("%w: timeout %v longer than interval %v", ErrBadSpec, s.Timeout, s.Interval)
	}
	if s.Rise < 1 || s.Fall < 1 {
		return fmt.Errorf("%w: rise %d and fall %d must be at least 1", ErrBadSpec, s.Rise, s.Fall)
	}
	return nil
}

// equal reports whether a and b probe the same way.
func (s Spec) equal(o Spec) bool {
	return s.Type == o.Type && s.Path == o.Path && s.Host == o.Host && s.Method == o.Method &&
		s.ExpectStatus == o.ExpectStatus && s.ExpectBody == o.ExpectBody &&
		bytes.Equal(s.Payload, o.Payload) && bytes.Equal(s.ExpectReply, o.ExpectReply) &&
		s.Interval == o.Interval && s.Timeout == o.Timeout && s.Rise == o.Rise && s.Fall == o.Fall
}

// Target is one thing to probe.
type Target struct {
	Key  Key
	Addr netip.AddrPort // where the probe connects: the backend, or VIP:port through the tunnel
	Mark uint32         // SO_MARK on the probe socket, 0 for none; needs CAP_NET_ADMIN
	Spec Spec
}

// sameProbe reports whether t and o probe identically (same key assumed).
func (t Target) sameProbe(o Target) bool {
	return t.Addr == o.Addr && t.Mark == o.Mark && t.Spec.equal(o.Spec)
}
