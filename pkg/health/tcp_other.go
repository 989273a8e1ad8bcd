//go:build !linux

package health

import (
	"context"
	"net"
	"net/netip"
)

// connectTCP opens a TCP connection to addr and resets it at once.
func connectTCP(ctx context.Context, addr netip.AddrPort, mark uint32) error {
	d := &net.Dialer{Control: markControl(mark), KeepAlive: -1}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return err
	}
	_ = c.(*net.TCPConn).SetLinger(0)
	return c.Close()
}
