//go:build !linux

package health

import (
	"errors"
	"syscall"
)

// markControl fails every marked probe: SO_MARK is Linux only.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(string, string, syscall.RawConn) error {
		return errors.New("SO_MARK is only supported on linux")
	}
}
