// xdpmode.go: the mode xdp_lb is attached in, as the kernel offers them.

package dataplane

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// XDPMode is how an XDP program is attached to an interface.
type XDPMode string

const (
	// XDPAuto is native, falling back to generic when the driver refuses native XDP.
	XDPAuto XDPMode = "auto"
	// XDPNative runs in the driver, before an skb is built: the fast one.
	XDPNative XDPMode = "native"
	// XDPGeneric runs after the skb is built: any interface, far slower.
	XDPGeneric XDPMode = "generic"
	// XDPOffload runs on the NIC; only when asked, and few programs can.
	XDPOffload XDPMode = "offload"
)

// XDPModes are the modes a config may name.
var XDPModes = []XDPMode{XDPAuto, XDPNative, XDPGeneric, XDPOffload}

// attachXDP attaches prog to ifindex in mode; auto tries native, then generic. It returns
// the mode in effect and, for a fallback, why.
func attachXDP(prog *ebpf.Program, ifindex int, ifname string, mode XDPMode) (link.Link, XDPMode, string, error) {
	try := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
	}
	switch mode {
	case XDPNative:
		l, err := try(link.XDPDriverMode)
		if err != nil {
			return nil, "", "", fmt.Errorf("native XDP on %s (driver %s): %w", ifname, driverOf(ifname), err)
		}
		return l, XDPNative, "", nil
	case XDPGeneric:
		l, err := try(link.XDPGenericMode)
		return l, XDPGeneric, "", err
	case XDPOffload:
		l, err := try(link.XDPOffloadMode)
		if err != nil {
			return nil, "", "", fmt.Errorf("XDP offload on %s: driver %s refuses it (%w); xdp_lb's maps (LRU hashes, an array of maps) are beyond what NICs offload: use native", ifname, driverOf(ifname), err)
		}
		return l, XDPOffload, "", nil
	case XDPAuto, "":
		l, err := try(link.XDPDriverMode)
		if err == nil {
			return l, XDPNative, "", nil
		}
		why := fmt.Sprintf("driver %s refused native XDP (%v): running in generic mode, far slower", driverOf(ifname), err)
		l, gerr := try(link.XDPGenericMode)
		if gerr != nil {
			return nil, "", "", fmt.Errorf("%s; generic XDP failed too: %w", why, gerr)
		}
		return l, XDPGeneric, why, nil
	}
	return nil, "", "", fmt.Errorf("XDP mode %q: want one of %v", mode, XDPModes)
}

// attachedMode is the mode of the XDP program attached to ifindex, as netlink reports it.
func attachedMode(ifindex int) XDPMode {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil || l.Attrs().Xdp == nil {
		return ""
	}
	switch l.Attrs().Xdp.AttachMode {
	case 1: // XDP_ATTACHED_DRV
		return XDPNative
	case 2: // XDP_ATTACHED_SKB
		return XDPGeneric
	case 3: // XDP_ATTACHED_HW
		return XDPOffload
	}
	return ""
}

// driverOf names ifname's driver (ethtool), for error messages.
func driverOf(ifname string) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "unknown"
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, ifname)
	if err != nil {
		return "unknown"
	}
	return strings.TrimRight(string(info.Driver[:]), "\x00")
}
