package testbed

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// namespaces returns the names in /run/netns of fleets with this prefix, by ID.
func namespaces(prefix string) map[string][]string {
	ents, _ := os.ReadDir(netnsDir)
	byID := map[string][]string{}
	for _, e := range ents {
		if id, ok := parseID(prefix, e.Name()); ok {
			byID[id] = append(byID[id], e.Name())
		}
	}
	return byID
}

func namespacesOf(prefix, id string) []string { return namespaces(prefix)[id] }

// takeOrphan returns the lock of a fleet whose owner is gone, held, or nil if
// the owner lives (in this process or another).
func takeOrphan(prefix, id string) *os.File {
	if isLiveHere(prefix, id) {
		return nil
	}
	f, err := os.OpenFile(lockPath(prefix, id), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil
	}
	return f
}

// Cleanup removes what killed runs with this prefix left behind: their
// namespaces (and processes in them), bpffs mounts, temporary directories
// and lock files. Fleets that are alive, in this process or another, are
// left alone. Safe to call at the start of TestMain.
func Cleanup(prefix string) {
	if prefix == "" {
		prefix = "lbd"
	}
	ids := map[string]bool{}
	for id := range namespaces(prefix) {
		ids[id] = true
	}
	dirs := tempDirs(prefix)
	for id := range dirs {
		ids[id] = true
	}
	if ents, err := os.ReadDir(lockDir); err == nil {
		for _, e := range ents {
			if id, ok := parseID(prefix, strings.TrimSuffix(e.Name(), ".lock")+"-"); ok {
				ids[id] = true
			}
		}
	}
	for id := range ids {
		lock := takeOrphan(prefix, id)
		if lock == nil {
			continue
		}
		for _, name := range namespacesOf(prefix, id) {
			// best effort: what cannot go now is a leftover the next Cleanup retries
			_ = killNetnsPids(name)
			_ = deleteNamedNS(name)
		}
		for _, dir := range dirs[id] {
			removeTempDir(dir)
		}
		os.Remove(lock.Name())
		lock.Close()
	}
}

// Leaks returns the netns names with this prefix that are still present and
// belong to this process's fleets or to no live fleet at all. Fleets of other
// processes running at the same time are not leaks.
func Leaks(prefix string) []string {
	if prefix == "" {
		prefix = "lbd"
	}
	var leaks []string
	for id, names := range namespaces(prefix) {
		leaked := isLiveHere(prefix, id)
		if !leaked {
			if lock := takeOrphan(prefix, id); lock != nil {
				lock.Close() // leave the file: Cleanup removes it with the rest
				leaked = true
			}
		}
		if leaked {
			leaks = append(leaks, names...)
		}
	}
	sort.Strings(leaks)
	return leaks
}

// Leftovers lists what of f is on the machine: its namespaces (as paths),
// temporary directories and lock file. After Close it is empty.
func (f *Fleet) Leftovers() []string {
	if f.ID == "" {
		return nil
	}
	var out []string
	for _, name := range namespacesOf(f.Prefix, f.ID) {
		out = append(out, filepath.Join(netnsDir, name))
	}
	out = append(out, tempDirs(f.Prefix)[f.ID]...)
	if _, err := os.Stat(lockPath(f.Prefix, f.ID)); err == nil {
		out = append(out, lockPath(f.Prefix, f.ID))
	}
	sort.Strings(out)
	return out
}

// tempDirs returns the fleets' temporary directories (os.TempDir()/<prefix>-<id>-*), by ID.
func tempDirs(prefix string) map[string][]string {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"-*"))
	byID := map[string][]string{}
	for _, m := range matches {
		if id, ok := parseID(prefix, filepath.Base(m)); ok {
			byID[id] = append(byID[id], m)
		}
	}
	return byID
}

// removeTempDir unmounts whatever is mounted under dir, then removes it; it
// removes nothing while something is still mounted there.
func removeTempDir(dir string) {
	for _, mp := range mountsUnder(dir) {
		_ = unmount(mp) // checked below: nothing is removed while a mount stays
	}
	if len(mountsUnder(dir)) == 0 {
		os.RemoveAll(dir)
	}
}

// mountsUnder returns the mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var mps []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mps)))
	return mps
}

// unescapeMount undoes mountinfo's octal escapes (\040 for space, …).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
