package dataplane

import (
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNewNetns runs fn with the goroutine's thread in a new network namespace, which goes
// when fn returns.
func inNewNetns(t *testing.T, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // the thread must not go back to the runtime in the wrong namespace
		}
		ns.Close()
	}()
	fn()
}

// upLoopback sets lo up in the namespace of the calling thread (a new one: inNewNetns).
func upLoopback(t *testing.T) netlink.Link {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return lo
}

// TestXDPModes: auto runs natively where the driver can, and falls back to generic with a
// reason where it cannot (loopback has no native XDP); native there is an error naming the
// driver; generic is what was asked. Each reports the mode netlink sees.
func TestXDPModes(t *testing.T) {
	pins := mustBPFFS(t)
	inNewNetns(t, func() {
		upLoopback(t)
		open := func(mode XDPMode) (*LB, error) {
			return OpenLB(Config{Interface: "lo", PinDir: pins, HashSeed: testSeed, XDPMode: mode,
				EncapSource: lbAddr, FlowTableSize: 4096})
		}
		lb, err := open(XDPAuto)
		if err != nil {
			t.Fatalf("auto on lo: %v", err)
		}
		if lb.Mode != XDPGeneric || !strings.Contains(lb.ModeNote, "refused native XDP") || attachedMode(lb.ifindex) != XDPGeneric {
			t.Errorf("auto on lo: mode %q (%q), netlink says %q; want generic with a reason", lb.Mode, lb.ModeNote, attachedMode(lb.ifindex))
		}
		if err := lb.Detach(); err != nil {
			t.Fatal(err)
		}
		if _, err := open(XDPNative); err == nil || !strings.Contains(err.Error(), "native XDP on lo (driver") {
			t.Errorf("native on lo: %v, want an error naming the driver", err)
		}
		lb, err = open(XDPGeneric)
		if err != nil {
			t.Fatalf("generic on lo: %v", err)
		}
		if lb.Mode != XDPGeneric || lb.ModeNote != "" {
			t.Errorf("generic on lo: mode %q (%q)", lb.Mode, lb.ModeNote)
		}
		// a restart adopts the pinned link and reports its real mode
		lb.Close()
		lb, err = open(XDPAuto)
		if err != nil {
			t.Fatal(err)
		}
		if !lb.Adopted || lb.Mode != XDPGeneric {
			t.Errorf("restart: adopted %v, mode %q", lb.Adopted, lb.Mode)
		}
		if err := lb.Detach(); err != nil {
			t.Fatal(err)
		}
		if _, err := open(XDPOffload); err == nil || !strings.Contains(err.Error(), "offload") {
			t.Errorf("offload on lo: %v, want an error", err)
		}
		_ = DetachPinned(pins)
	})
}
