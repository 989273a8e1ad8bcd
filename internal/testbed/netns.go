package testbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/lbdproj/lbd/internal/wait"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	netnsDir  = "/run/netns"
	killGrace = 2 * time.Second
)

// newNamedNS makes a named netns (like `ip netns add`) without moving the
// caller's thread.
func newNamedNS(name string) (netns.NsHandle, error) {
	ns := netns.NsHandle(-1)
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
		h, nerr := netns.NewNamed(name) // moves this thread into the new namespace
		if nerr != nil && !errors.Is(nerr, os.ErrExist) {
			// NewNamed may leave an empty file behind.
			os.Remove(filepath.Join(netnsDir, name))
		}
		if err := netns.Set(orig); err != nil {
			if nerr == nil {
				h.Close()
			}
			done <- fmt.Errorf("restore netns: %w", err) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		ns = h
		done <- nerr
	}()
	if err := <-done; err != nil {
		return -1, err
	}
	return ns, nil
}

func doIn(target netns.NsHandle, fn func() error) error {
	type result struct {
		err      error
		panicked bool
		val      any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("get netns: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("set netns: %w", err)}
			return
		}
		var r result
		func() {
			defer func() {
				if v := recover(); v != nil {
					r = result{panicked: true, val: v}
				}
			}()
			r.err = fn()
		}()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime kills it when this
			// goroutine exits, so no one else runs in the wrong namespace.
			if !r.panicked {
				r.err = fmt.Errorf("restore netns: %w (fn: %v)", err, r.err)
			}
		} else {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	if r.panicked {
		panic(r.val)
	}
	return r.err
}

// deleteNamedNS removes a named netns (`ip netns del`); a name that is not
// there is not an error.
func deleteNamedNS(name string) error {
	path := filepath.Join(netnsDir, name)
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

// killNetnsPids kills every process whose network namespace is the named
// one (what `ip netns pids` lists), except this process, and waits for them
// to go.
func killNetnsPids(name string) error {
	var ns unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, name), &ns); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("stat netns %s: %w", name, err)
	}
	find := func() []int {
		ents, _ := os.ReadDir("/proc")
		var pids []int
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(filepath.Join("/proc", e.Name(), "ns/net"), &st) != nil {
				continue
			}
			if st.Dev == ns.Dev && st.Ino == ns.Ino {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	pids := find()
	if len(pids) == 0 {
		return nil
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL) // gone already is as good; the wait below checks
	}
	if err := wait.Until(killGrace, pollInterval, func() (bool, error) { return len(find()) == 0, nil }); err != nil {
		return fmt.Errorf("processes %v in netns %s: %w", find(), name, err)
	}
	return nil
}
