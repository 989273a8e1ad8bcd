package testbed

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/lbdproj/lbd/internal/wait"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Host is one network namespace of the fleet.
type Host struct {
	Name    string           // role: "switch", "client", "lb0", "be1", …
	NS      string           // netns name, usable with `ip netns exec`
	Link    string           // "eth0" (the bridge's name for the switch)
	Peer    string           // other end of the veth: on the switch, e.g. "lb0-1a2b3c"; "eth1" in the router for the client behind one; in lb0 of a point-to-point fleet, "eth1" for the client, "eth0" for be0; empty for the switch and that lb0
	Addr    netip.Addr       // IPv4 on Link (invalid for the switch)
	Addr6   netip.Addr       // IPv6 on Link, no DAD (invalid for the switch and in a point-to-point fleet)
	MAC     net.HardwareAddr // of Link
	Ifindex int              // of Link, inside NS

	fleet *Fleet
	up    *Host          // whose namespace Peer is in: the switch, the router, or a point-to-point fleet's lb0; nil for the switch and that lb0
	ns    netns.NsHandle // -1 until made
}

func (h *Host) String() string { return h.Name + "(" + h.NS + ")" }

// Do runs fn with its OS thread in h's network namespace, so sockets and
// netlink handles fn creates belong there. fn runs on a fresh goroutine
// locked to its thread (don't call t.FailNow in it); if the thread cannot be
// switched back, it is thrown away rather than reused. A panic in fn is
// re-raised in the caller.
func (h *Host) Do(fn func() error) error {
	if h.ns < 0 {
		return fmt.Errorf("%s: no namespace", h.Name)
	}
	return doIn(h.ns, fn)
}

// Netlink returns a netlink handle that works in h's namespace; close it.
func (h *Host) Netlink() (*netlink.Handle, error) {
	if h.ns < 0 {
		return nil, fmt.Errorf("%s: no namespace", h.Name)
	}
	nh, err := netlink.NewHandleAt(h.ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", h.NS, err)
	}
	return nh, nil
}

func (h *Host) setSysctls(kv map[string]string) error {
	return h.Do(func() error {
		for k, v := range kv {
			// /proc/sys/net follows the opening thread's namespace.
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s in %s: %w", k, h.NS, err)
			}
		}
		return nil
	})
}

// Sysctl sets one sysctl in h's namespace, key as a path under /proc/sys,
// e.g. "net/ipv4/ip_forward".
func (h *Host) Sysctl(key, value string) error {
	return h.setSysctls(map[string]string{key: value})
}

// waitOperUp polls until the named links in h's namespace are operationally
// up. Carrier and qdisc activation happen in the kernel's linkwatch work, up
// to a second after "ip link set up": until then a veth drops what it sends.
func (h *Host) waitOperUp(timeout time.Duration, names ...string) error {
	nh, err := h.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	for _, name := range names {
		var state netlink.LinkOperState
		err = wait.Until(timeout, pollInterval, func() (bool, error) {
			l, err := nh.LinkByName(name)
			if err != nil {
				return false, err
			}
			state = l.Attrs().OperState
			return state == netlink.OperUp, nil
		})
		if err != nil {
			return fmt.Errorf("%s: %s not up (state %s): %w", h.NS, name, state, err)
		}
	}
	return nil
}

// Listen opens a listener whose socket is made in h's namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := h.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacket opens a packet socket made in h's namespace.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := h.Do(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Dialer dials from a host's namespace. Set the embedded net.Dialer's fields
// (Timeout, LocalAddr, …) as usual.
type Dialer struct {
	net.Dialer
	Host *Host
}

// Dialer returns a Dialer for h.
func (h *Host) Dialer() *Dialer { return &Dialer{Host: h} }

// DialContext connects from d.Host's namespace.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := d.Host.Do(func() (err error) {
		c, err = d.Dialer.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Dial connects from d.Host's namespace.
func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// DialContext connects from h's namespace.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return h.Dialer().DialContext(ctx, network, addr)
}

// HTTPClient returns a client that dials from h's namespace, one new TCP
// connection per request (keep-alives off, so each request is a new flow).
func (h *Host) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       h.DialContext,
			DisableKeepAlives: true,
		},
	}
}

// Command returns `ip netns exec NS name args…`; the caller runs and waits
// for it. Prefer Fleet.Start for long-running processes.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Interface returns the named interface of h's namespace, e.g. a router's
// or a point-to-point lb0's leg on the client's segment, f.Client.Peer.
func (h *Host) Interface(name string) (*net.Interface, error) {
	var ifc *net.Interface
	err := h.Do(func() (err error) {
		ifc, err = net.InterfaceByName(name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: interface %s: %w", h.NS, name, err)
	}
	return ifc, nil
}

// LinkStats returns the packet counters of h's Link.
func (h *Host) LinkStats() (rxPackets, txPackets uint64, err error) {
	nh, err := h.Netlink()
	if err != nil {
		return 0, 0, err
	}
	defer nh.Close()
	l, err := nh.LinkByName(h.Link)
	if err != nil {
		return 0, 0, fmt.Errorf("%s %s: %w", h.NS, h.Link, err)
	}
	s := l.Attrs().Statistics
	if s == nil {
		return 0, 0, fmt.Errorf("%s %s: no statistics", h.NS, h.Link)
	}
	return s.RxPackets, s.TxPackets, nil
}

// AddAddr adds another address to h's link (the segment's prefix length, no DAD), so a
// test can speak from a second source.
func (h *Host) AddAddr(a netip.Addr) error {
	nh, err := h.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	l, err := nh.LinkByName(h.Link)
	if err != nil {
		return err
	}
	return addAddr(nh, l, a)
}

// XDPProgramID is the id of the XDP program attached to h's link (0 for none).
func (h *Host) XDPProgramID() (uint32, error) {
	nh, err := h.Netlink()
	if err != nil {
		return 0, err
	}
	defer nh.Close()
	l, err := nh.LinkByName(h.Link)
	if err != nil {
		return 0, err
	}
	if x := l.Attrs().Xdp; x != nil {
		return x.ProgId, nil
	}
	return 0, nil
}
