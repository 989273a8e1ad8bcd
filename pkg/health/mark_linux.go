package health

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// markControl returns a net.Dialer.Control that sets SO_MARK on the probe socket
// before it connects, so policy routing or a tc program can pick the probe out
// (probes through the tunnel). nil when mark is 0. Setting it needs CAP_NET_ADMIN.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set SO_MARK %#x: %w", mark, serr)
		}
		return nil
	}
}
