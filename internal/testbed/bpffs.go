package testbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// mountPinDir makes the fleet's temporary directory Dir and mounts a bpffs at
// Dir/bpf, PinDir. It is in the host mount namespace, not under /sys/fs/bpf:
// `ip netns exec` remounts /sys, and the processes it starts must see PinDir.
func (f *Fleet) mountPinDir() error {
	dir, err := os.MkdirTemp("", f.Prefix+"-"+f.ID+"-")
	if err != nil {
		return err
	}
	f.Dir = dir
	pin := filepath.Join(dir, "bpf")
	if err := os.Mkdir(pin, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("bpffs", pin, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs on %s: %w", pin, err)
	}
	f.PinDir = pin
	return nil
}

// unmount unmounts dir, lazily if it is busy; a dir that is not a mount
// point is not an error.
func unmount(dir string) error {
	err := unix.Unmount(dir, 0)
	if err == nil || errors.Is(err, unix.EINVAL) { // EINVAL: not mounted
		return nil
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}
