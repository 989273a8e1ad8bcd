package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// A live fleet holds an flock on lockDir/<prefix>-<id>.lock. The kernel drops
// it when the process dies, however it dies, so "lock free" means "leftover".
// That lets Cleanup and Leaks tell leftovers from fleets of other test
// binaries running at the same time (go test runs packages in parallel).
const (
	lockDir  = "/run/lbd-testbed"
	idHexLen = 6
)

// reserveID picks a random ID and takes the run's lock file, so that Cleanup
// in another process leaves this run alone while it lives.
func (f *Fleet) reserveID() error {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return fmt.Errorf("lock dir: %w", err)
	}
	for range 100 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		id := hex.EncodeToString(b[:])
		if len(namespacesOf(f.Prefix, id)) > 0 {
			continue
		}
		fd, err := os.OpenFile(lockPath(f.Prefix, id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("lock file: %w", err)
		}
		if err := unix.Flock(int(fd.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			fd.Close()
			os.Remove(fd.Name())
			return fmt.Errorf("lock %s: %w", fd.Name(), err)
		}
		fmt.Fprintf(fd, "%d\n", os.Getpid())
		f.ID, f.lock = id, fd
		registerLive(f.Prefix, id)
		return nil
	}
	return errors.New("no free fleet ID after 100 tries")
}

func lockPath(prefix, id string) string { return filepath.Join(lockDir, prefix+"-"+id+".lock") }

// fleets of this process that are not closed yet, by prefix-id
var live = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

func registerLive(prefix, id string) {
	live.Lock()
	defer live.Unlock()
	live.m[prefix+"-"+id] = true
}

func unregisterLive(prefix, id string) {
	live.Lock()
	defer live.Unlock()
	delete(live.m, prefix+"-"+id)
}

func isLiveHere(prefix, id string) bool {
	live.Lock()
	defer live.Unlock()
	return live.m[prefix+"-"+id]
}

// parseID returns the fleet ID in a name <prefix>-<6hex>-<rest>.
func parseID(prefix, name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok || len(rest) < idHexLen+1 || rest[idHexLen] != '-' {
		return "", false
	}
	id := rest[:idHexLen]
	for _, c := range id {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return "", false
		}
	}
	return id, true
}
