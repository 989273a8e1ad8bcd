package health

import (
	"context"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// connectTCP opens a TCP connection to addr and resets it at once: the whole TCP
// probe. It talks to the socket directly rather than through net.Dialer, which
// after connecting also asks for both addresses, sets TCP_NODELAY and keep-alive
// options and builds a net.Conn: half of the system calls of a probe, wasted
// when the connection is closed right away (see the scale figures in doc.go).
// The wait for the handshake still goes through the runtime's poller.
//
// Closing with SO_LINGER 0 sends a reset instead of a FIN, so the prober keeps no
// TIME_WAIT socket per probe (10,000 probes/s would hold ~600,000 of them and
// overflow tcp_max_tw_buckets). HAProxy's checks do the same.
func connectTCP(ctx context.Context, addr netip.AddrPort, mark uint32) error {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(addr), Err: err}
	}
	family, sa, err := sockaddr(addr)
	if err != nil {
		return opErr(err)
	}
	fd, err := probeSocket(family, mark)
	if err != nil {
		return opErr(err)
	}
	switch err := unix.Connect(fd, sa); err {
	case nil:
		unix.Close(fd)
		return nil
	case unix.EINPROGRESS:
	default:
		unix.Close(fd)
		return opErr(os.NewSyscallError("connect", err))
	}

	f := os.NewFile(uintptr(fd), "probe") // non-blocking: registered with the poller
	defer f.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = f.SetWriteDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return opErr(err)
	}
	var connErr error
	check := func(fd uintptr) bool {
		// Called once before waiting, then on each writability edge: read the
		// state rather than trust that writable means connected.
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.SOL_TCP, unix.TCP_INFO)
		if err != nil {
			connErr = os.NewSyscallError("getsockopt", err)
			return true
		}
		switch info.State {
		case unix.BPF_TCP_SYN_SENT:
			return false
		case unix.BPF_TCP_CLOSE:
			// Refused or unreachable, or connected and already reset by the
			// peer (ECONNRESET only happens after the handshake: a success).
			errno, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
			if err != nil {
				connErr = os.NewSyscallError("getsockopt", err)
			} else if e := syscall.Errno(errno); e != 0 && e != syscall.ECONNRESET {
				connErr = os.NewSyscallError("connect", e)
			}
		}
		// Any other state (established, or the peer already closing) means
		// the handshake completed.
		return true
	}
	if err := rc.Write(check); err != nil {
		// Out of time. Look once more: on a starved machine the deadline timer
		// can fire before the poller reports a handshake the kernel finished
		// in time, and a false failure here can take a healthy backend down.
		done := false
		if cerr := rc.Control(func(fd uintptr) { done = check(fd) }); cerr != nil || !done {
			return opErr(err) // "i/o timeout"
		}
	}
	if connErr != nil {
		return opErr(connErr)
	}
	return nil
}

// probeSocket returns a non-blocking TCP socket that resets on close and
// carries mark (if not 0).
func probeSocket(family int, mark uint32) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("setsockopt", err)
	}
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			unix.Close(fd)
			return -1, os.NewSyscallError("set SO_MARK", err)
		}
	}
	return fd, nil
}

func sockaddr(a netip.AddrPort) (family int, sa unix.Sockaddr, err error) {
	ip := a.Addr()
	if ip.Is4() || ip.Is4In6() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(a.Port()), Addr: ip.Unmap().As4()}, nil
	}
	sa6 := &unix.SockaddrInet6{Port: int(a.Port()), Addr: ip.As16()}
	if z := ip.Zone(); z != "" {
		ifi, err := net.InterfaceByName(z)
		if err != nil {
			return 0, nil, err
		}
		sa6.ZoneId = uint32(ifi.Index)
	}
	return unix.AF_INET6, sa6, nil
}
