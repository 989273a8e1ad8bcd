package dataplane

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain fails the package's tests when they leave BPF objects open: every program and
// map a test loads must be closed by its cleanup, or a long fuzz run exhausts the
// process's file descriptors (cilium/ebpf's testmain does the same).
func TestMain(m *testing.M) {
	before := bpfFDs()
	code := m.Run()
	if leaked := bpfFDs() - before; code == 0 && leaked > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d BPF file descriptors (maps, programs, links) left open by the tests\n", leaked)
		code = 1
	}
	os.Exit(code)
}

// bpfFDs counts this process's open BPF objects (anon inodes bpf-map, bpf-prog, bpf_link).
func bpfFDs() int {
	fds, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		return 0
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, "anon_inode:bpf") {
			n++
		}
	}
	return n
}
