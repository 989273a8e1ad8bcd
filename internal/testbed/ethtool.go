package testbed

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifreqData is struct ifreq with ifr_data (40 bytes on 64-bit).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ethtool runs one ETHTOOL_{G,S}* value command on ifname, in the namespace
// of the calling thread.
func ethtool(ifname string, cmd, data uint32) (uint32, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], ifname)
	ifr.data = unsafe.Pointer(&v)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return 0, fmt.Errorf("ethtool %#x on %s: %w", cmd, ifname, errno)
	}
	return v.data, nil
}

// setTxOffloads turns TX checksumming, TSO and GSO on or off on h's Link.
// The client needs them off: CHECKSUM_PARTIAL packets do not survive XDP on
// the LB's veth (Linux 6.18).
func (h *Host) setTxOffloads(on bool) error {
	var v uint32
	if on {
		v = 1
	}
	return h.Do(func() error {
		for _, cmd := range []uint32{unix.ETHTOOL_STXCSUM, unix.ETHTOOL_STSO, unix.ETHTOOL_SGSO} {
			if _, err := ethtool(h.Link, cmd, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// TxChecksum reports whether TX checksum offload is on for h's Link
// (ETHTOOL_GTXCSUM).
func (h *Host) TxChecksum() (bool, error) {
	var v uint32
	err := h.Do(func() (err error) {
		v, err = ethtool(h.Link, unix.ETHTOOL_GTXCSUM, 0)
		return err
	})
	return v != 0, err
}
