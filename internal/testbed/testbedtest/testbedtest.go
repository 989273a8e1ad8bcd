// Package testbedtest holds the testing.TB helpers for package testbed: a fleet that lives
// as long as a test, and the skip for tests that need root. It is apart from testbed so
// that what links testbed (lbd demo, the benchmarks) does not link package testing.
package testbedtest

import (
	"os"
	"testing"

	"github.com/lbdproj/lbd/internal/testbed"
)

// SkipIfNotRoot skips the test, saying why, unless it runs as root.
func SkipIfNotRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip(testbed.ErrNotRoot)
	}
}

// New builds a fleet for a test: it skips the test when not root, fails it when the fleet
// cannot be built, and closes the fleet in tb.Cleanup. When the test failed, the output of
// every process the fleet started is logged.
func New(tb testing.TB, opts testbed.Options) *testbed.Fleet {
	tb.Helper()
	SkipIfNotRoot(tb)
	f, err := testbed.New(opts)
	if err != nil {
		tb.Fatalf("testbed: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			for _, p := range f.Processes() {
				tb.Logf("testbed: output of %s on %s:\n%s", p.Name, p.Host.Name, p.Output())
			}
		}
		if err := f.Close(); err != nil {
			tb.Errorf("testbed: close: %v", err)
		}
	})
	return f
}
