package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/lbdproj/lbd/internal/testbed"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The point-to-point topology (DESIGN.md, "Throughput"):
//
//	gen [genLink] ─veth─ [lbIn] lb [lbOut] ─veth─ [sinkLink] sink
//
// Namespaces are <prefix>-<id>-{gen,lb,sink}; the temporary directory (with the bpffs) is
// $TMPDIR/<prefix>-<id>-*; a run holds an flock on /run/lbd-testbed/<prefix>-<id>.lock while
// it lives. That is internal/testbed's convention, so testbed.Cleanup(prefix) at the start of
// a run removes what a killed run left behind and leaves runs that are alive alone.
const (
	prefix   = "lbdtp"
	lockDir  = "/run/lbd-testbed"
	genLink  = "to-lb"
	lbIn     = "to-gen"
	lbOut    = "to-sink"
	sinkLink = "to-lb"
	lbInMTU  = 1500 // the client side
	lbOutMTU = 1600 // room for the outer header
	upWait   = 5 * time.Second
)

// Addresses on the links (the path is XDP end to end: they only make the hosts look real).
var (
	genAddr  = netip.MustParsePrefix("198.18.2.1/24")
	lbInAddr = netip.MustParsePrefix("198.18.2.2/24")
	lbOutIP  = netip.MustParsePrefix("198.18.3.1/24")
	sinkAddr = netip.MustParsePrefix("198.18.3.2/24")
)

// host is one namespace of the topology.
type host struct {
	name string // netns name
	ns   netns.NsHandle
}

// topo is a built topology. close tears it down and is safe after a partial build.
type topo struct {
	id              string
	gen, lb, sink   *host
	dir, pinDir     string
	lock            *os.File
	genIfindex      int              // genLink, in gen
	lbInIfindex     int              // lbIn, in lb
	lbOutIfindex    int              // lbOut, in lb
	sinkIfindex     int              // sinkLink, in sink
	genMAC, lbInMAC net.HardwareAddr // genLink, lbIn
	lbOutMAC        net.HardwareAddr
	sinkMAC         net.HardwareAddr
}

func newTopo() (_ *topo, err error) {
	testbed.Cleanup(prefix) // leftovers of killed runs; live runs hold their lock
	t := &topo{}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.close())
		}
	}()
	if err := t.reserveID(); err != nil {
		return nil, err
	}
	if t.dir, err = os.MkdirTemp("", prefix+"-"+t.id+"-"); err != nil {
		return nil, err
	}
	pin := filepath.Join(t.dir, "bpf")
	if err := os.Mkdir(pin, 0o700); err != nil {
		return nil, err
	}
	if err := unix.Mount("bpffs", pin, "bpf", 0, "mode=0700"); err != nil {
		return nil, fmt.Errorf("mount bpffs on %s: %w", pin, err)
	}
	t.pinDir = pin
	for _, x := range []struct {
		h    **host
		role string
	}{{&t.gen, "gen"}, {&t.lb, "lb"}, {&t.sink, "sink"}} {
		h, err := newHost(t.nsName(x.role))
		if h != nil {
			*x.h = h
		}
		if err != nil {
			return nil, err
		}
	}
	if err := t.lb.veth(lbIn, t.gen, genLink, lbInMTU, lbInAddr, genAddr); err != nil {
		return nil, err
	}
	if err := t.lb.veth(lbOut, t.sink, sinkLink, lbOutMTU, lbOutIP, sinkAddr); err != nil {
		return nil, err
	}
	for _, x := range []struct {
		h       *host
		name    string
		ifindex *int
		mac     *net.HardwareAddr
	}{
		{t.gen, genLink, &t.genIfindex, &t.genMAC},
		{t.lb, lbIn, &t.lbInIfindex, &t.lbInMAC},
		{t.lb, lbOut, &t.lbOutIfindex, &t.lbOutMAC},
		{t.sink, sinkLink, &t.sinkIfindex, &t.sinkMAC},
	} {
		l, err := x.h.waitUp(x.name)
		if err != nil {
			return nil, err
		}
		if x.ifindex != nil {
			*x.ifindex = l.Attrs().Index
		}
		*x.mac = l.Attrs().HardwareAddr
	}
	return t, nil
}

func (t *topo) nsName(role string) string { return prefix + "-" + t.id + "-" + role }

// reserveID picks a random run ID and takes its lock (see the comment on prefix).
func (t *topo) reserveID() error {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return fmt.Errorf("lock dir: %w", err)
	}
	for range 100 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		id := hex.EncodeToString(b[:])
		if m, _ := filepath.Glob(filepath.Join("/run/netns", prefix+"-"+id+"-*")); len(m) > 0 {
			continue
		}
		f, err := os.OpenFile(filepath.Join(lockDir, prefix+"-"+id+".lock"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("lock file: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			os.Remove(f.Name())
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
		t.id, t.lock = id, f
		return nil
	}
	return errors.New("no free run ID after 100 tries")
}

// close removes the links, the namespaces, the bpffs and the directory, and the lock;
// the caller has closed or detached every BPF link first.
func (t *topo) close() error {
	var errs []error
	if t.lb != nil && t.lb.ns >= 0 {
		// deleting a veth deletes its peer; doing it here makes teardown synchronous
		if nh, err := netlink.NewHandleAt(t.lb.ns); err == nil {
			for _, name := range []string{lbIn, lbOut} {
				if l, err := nh.LinkByName(name); err == nil {
					if err := nh.LinkDel(l); err != nil {
						errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
					}
				}
			}
			nh.Close()
		} else {
			errs = append(errs, err)
		}
	}
	for _, h := range []*host{t.gen, t.lb, t.sink} {
		if h == nil {
			continue
		}
		if h.ns >= 0 {
			h.ns.Close()
			h.ns = -1
		}
		errs = append(errs, deleteNS(h.name))
	}
	if t.pinDir != "" {
		if err := unix.Unmount(t.pinDir, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			if err := unix.Unmount(t.pinDir, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", t.pinDir, err))
			}
		}
	}
	if t.dir != "" {
		errs = append(errs, os.RemoveAll(t.dir))
	}
	if t.lock != nil {
		errs = append(errs, os.Remove(t.lock.Name()), t.lock.Close())
	}
	return errors.Join(errs...)
}

// leftovers lists what of this run is still there after close (it should be nothing).
func (t *topo) leftovers() []string {
	var out []string
	if t.id == "" {
		return nil
	}
	m, _ := filepath.Glob(filepath.Join("/run/netns", prefix+"-"+t.id+"-*"))
	out = append(out, m...)
	m, _ = filepath.Glob(filepath.Join(os.TempDir(), prefix+"-"+t.id+"-*"))
	return append(out, m...)
}

// newHost makes a named netns (like `ip netns add`) without moving the caller's thread,
// with IPv6 off (no router solicitations or MLD reports in the counters) and lo up.
func newHost(name string) (*host, error) {
	h := &host{name: name, ns: -1}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		ns, nerr := netns.NewNamed(name) // moves this thread into the new namespace
		if nerr == nil {
			h.ns = ns
			for _, k := range []string{"all", "default"} {
				if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0o644); err != nil && nerr == nil {
					nerr = fmt.Errorf("disable ipv6 in %s: %w", name, err)
				}
			}
		}
		if err := netns.Set(orig); err != nil {
			done <- errors.Join(nerr, fmt.Errorf("restore netns: %w", err)) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		done <- nerr
	}()
	if err := <-done; err != nil {
		if h.ns < 0 {
			deleteNS(name) // NewNamed may leave the file behind
			return nil, fmt.Errorf("netns %s: %w", name, err)
		}
		return h, err
	}
	nh, err := netlink.NewHandleAt(h.ns)
	if err != nil {
		return h, err
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err != nil {
		return h, err
	}
	return h, nh.LinkSetUp(lo)
}

// veth joins h (link name) to peer (peerName) with a veth of as many queues as CPUs.
func (h *host) veth(name string, peer *host, peerName string, mtu int, addr, peerAddr netip.Prefix) error {
	nh, err := netlink.NewHandleAt(h.ns)
	if err != nil {
		return err
	}
	defer nh.Close()
	ph, err := netlink.NewHandleAt(peer.ns)
	if err != nil {
		return err
	}
	defer ph.Close()
	queues := runtime.NumCPU() // veth XDP wants at least as many queues as CPUs
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = name, mtu
	la.NumTxQueues, la.NumRxQueues = queues, queues
	v := &netlink.Veth{
		LinkAttrs:       la,
		PeerName:        peerName,
		PeerNamespace:   netlink.NsFd(int(peer.ns)),
		PeerTxQLen:      -1,
		PeerMTU:         uint32(mtu),
		PeerNumTxQueues: uint32(queues),
		PeerNumRxQueues: uint32(queues),
	}
	if err := nh.LinkAdd(v); err != nil {
		return fmt.Errorf("add veth %s/%s: %w", name, peerName, err)
	}
	for _, x := range []struct {
		nh   *netlink.Handle
		name string
		addr netip.Prefix
	}{{nh, name, addr}, {ph, peerName, peerAddr}} {
		l, err := x.nh.LinkByName(x.name)
		if err != nil {
			return err
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: x.addr.Addr().AsSlice(), Mask: net.CIDRMask(x.addr.Bits(), 32)}}
		if err := x.nh.AddrAdd(l, a); err != nil {
			return fmt.Errorf("add %s to %s: %w", x.addr, x.name, err)
		}
		if err := x.nh.LinkSetUp(l); err != nil {
			return fmt.Errorf("%s up: %w", x.name, err)
		}
	}
	return nil
}

// waitUp polls until the link is operationally up (a veth drops what it sends until the
// kernel's linkwatch work has run) and returns it.
func (h *host) waitUp(name string) (netlink.Link, error) {
	nh, err := netlink.NewHandleAt(h.ns)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	deadline := time.Now().Add(upWait)
	for {
		l, err := nh.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("%s in %s: %w", name, h.name, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s in %s: not up after %v (state %s)", name, h.name, upWait, l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// do runs fn on a locked OS thread in h's namespace; a thread that cannot be switched back
// is thrown away rather than reused.
func (h *host) do(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h.ns); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter %s: %w", h.name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err)) // the thread dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// deleteNS removes a named netns (`ip netns del`); a name that is not there is no error.
func deleteNS(name string) error {
	path := filepath.Join("/run/netns", name)
	err := unix.Unmount(path, unix.MNT_DETACH)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil && !errors.Is(err, unix.EINVAL) { // EINVAL: a file, not mounted
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}
