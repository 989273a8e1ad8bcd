package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// ErrNotBPFFS is returned when the pin directory is not on a bpf filesystem.
var ErrNotBPFFS = errors.New("not on a bpf filesystem")

// checkPinDir makes dir (on a bpffs) if needed and refuses any other filesystem: pins
// anywhere else would fail later with a less helpful error.
func checkPinDir(dir string) error {
	if dir == "" {
		return fmt.Errorf("pin directory: empty path")
	}
	parent := dir
	for {
		var st unix.Statfs_t
		err := unix.Statfs(parent, &st)
		if err == nil {
			if st.Type != unix.BPF_FS_MAGIC {
				return fmt.Errorf("pin directory %s: %s is %w (mount one there: mkdir -p %s && mount -t bpf bpf %s)",
					dir, parent, ErrNotBPFFS, dir, dir)
			}
			break
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("pin directory %s: %w", dir, err)
		}
		next := filepath.Dir(parent)
		if next == parent {
			return fmt.Errorf("pin directory %s: no existing parent", dir)
		}
		parent = next
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pin directory %s: %w", dir, err)
	}
	return nil
}

// adoptOrAttach swaps prog into the link pinned at path when it is attached to ifindex
// (a restart: the flow table and traffic carry on), or attaches afresh and pins the link.
func adoptOrAttach(path string, ifindex int, prog *ebpf.Program, attach func() (link.Link, error)) (link.Link, bool, error) {
	if l, err := link.LoadPinnedLink(path, nil); err == nil {
		if linkIfindex(l) == ifindex {
			if err := l.Update(prog); err == nil {
				return l, true, nil
			}
		}
		// pinned to another interface, or defunct (its interface is gone): replace it
		_ = l.Unpin()
		_ = l.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		_ = os.Remove(path)
	}
	l, err := attach()
	if err != nil {
		return nil, false, err
	}
	if err := l.Pin(path); err != nil {
		_ = l.Close()
		return nil, false, fmt.Errorf("pin link %s: %w", path, err)
	}
	return l, false, nil
}

func linkIfindex(l link.Link) int {
	info, err := l.Info()
	if err != nil {
		return -1
	}
	if x := info.XDP(); x != nil {
		return int(x.Ifindex)
	}
	if t := info.TCX(); t != nil {
		return int(t.Ifindex)
	}
	return -1
}

// unpinAll removes the pins lbd made in dir (maps and links) and the directory if empty.
func unpinAll(dir string, names []string) error {
	var errs []error
	for _, n := range names {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	_ = os.Remove(dir)
	return errors.Join(errs...)
}

// pinnedNames are the pins of spec's maps that are pinned by name (not .rodata and
// friends), and of tables a resize moved aside (resize.go).
func pinnedNames(spec *ebpf.CollectionSpec) []string {
	var out []string
	for name, m := range spec.Maps {
		if m.Pinning == ebpf.PinByName {
			out = append(out, name, name+oldPinSuffix)
		}
	}
	return out
}

// replaceStaleCounters removes the pins in dir of counter maps (names) that this build's
// spec can no longer use, because a new counter reason changed their size: counters may
// start again from zero across an upgrade (Prometheus takes it as a reset), whereas the
// maps that hold state (flows, VIPs, backends, rings) must be adopted or the load fails.
func replaceStaleCounters(spec *ebpf.CollectionSpec, dir string, names []string, log func(msg string, args ...any)) error {
	for _, name := range names {
		ms, ok := spec.Maps[name]
		if !ok {
			return fmt.Errorf("no map %q in the spec", name)
		}
		path := filepath.Join(dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open pinned %s: %w", path, err)
		}
		incompatible := ms.Compatible(m)
		m.Close()
		if incompatible == nil {
			continue
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("replace pinned counters %s: %w", path, err)
		}
		log("pinned counters from another lbd version replaced: they start from zero", "map", name, "reason", incompatible)
	}
	return nil
}

// PinnedRingSlots is how many slots of the rings map pinned under pinDir hold a ring: one per
// VIP with backends, more only while a resized ring is swapped in, or when rings leak.
func PinnedRingSlots(pinDir string) (int, error) {
	rings, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, lbDirPinName, "rings"), nil)
	if err != nil {
		return 0, fmt.Errorf("open pinned rings in %s: %w", pinDir, err)
	}
	defer rings.Close()
	n := 0
	var k uint32
	var id ebpf.MapID
	it := rings.Iterate()
	for it.Next(&k, &id) {
		n++
	}
	return n, it.Err()
}
