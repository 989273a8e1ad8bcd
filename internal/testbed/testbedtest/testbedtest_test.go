package testbedtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/testbed"
)

// prefix keeps this package's fleets apart from other packages' in Cleanup and Leaks.
const prefix = "lbdtbt"

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		testbed.Cleanup(prefix)
	}
	code := m.Run()
	if os.Geteuid() == 0 {
		if leaks := testbed.Leaks(prefix); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "testbedtest: leaked namespaces: %v\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

// recorder is a testing.TB that records what the helpers do with it instead of doing it;
// what it does not override goes to the real test.
type recorder struct {
	testing.TB
	failed   bool
	skipped  []any
	logs     []string
	cleanups []func()
}

func (r *recorder) Helper()          {}
func (r *recorder) Failed() bool     { return r.failed }
func (r *recorder) Skip(args ...any) { r.skipped = append(r.skipped, args...) }
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}
func (r *recorder) Cleanup(fn func()) { r.cleanups = append(r.cleanups, fn) }

func (r *recorder) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// TestSkipIfNotRoot: a test is skipped with testbed.ErrNotRoot exactly when it does not
// run as root.
func TestSkipIfNotRoot(t *testing.T) {
	r := &recorder{TB: t}
	SkipIfNotRoot(r)
	root := os.Geteuid() == 0
	if skipped := len(r.skipped) > 0; skipped == root {
		t.Fatalf("root %v, skipped %v (%v)", root, skipped, r.skipped)
	}
	if !root {
		if err, ok := r.skipped[0].(error); !ok || !errors.Is(err, testbed.ErrNotRoot) {
			t.Errorf("skipped with %v, want testbed.ErrNotRoot", r.skipped)
		}
	}
}

// TestNewClosesAtCleanup: the fleet lives as long as the test that built it.
func TestNewClosesAtCleanup(t *testing.T) {
	SkipIfNotRoot(t)
	var f *testbed.Fleet
	t.Run("build", func(t *testing.T) {
		f = New(t, testbed.Options{Prefix: prefix, Backends: 1})
		for _, h := range append(f.Hosts(), f.Switch) {
			if _, err := os.Stat(filepath.Join("/run/netns", h.NS)); err != nil {
				t.Errorf("%s: %v", h.Name, err)
			}
		}
	})
	if f == nil {
		t.Fatal("no fleet")
	}
	for _, h := range append(f.Hosts(), f.Switch) {
		if _, err := os.Stat(filepath.Join("/run/netns", h.NS)); !os.IsNotExist(err) {
			t.Errorf("%s: namespace %s still there after the test (%v)", h.Name, h.NS, err)
		}
	}
	if _, err := os.Stat(f.Dir); !os.IsNotExist(err) {
		t.Errorf("fleet directory %s still there after the test (%v)", f.Dir, err)
	}
}

// TestNewLogsOutputOfFailedTest: when the test failed, the cleanup logs what every process
// the fleet started wrote, then closes the fleet; when it passed, it only closes it.
func TestNewLogsOutputOfFailedTest(t *testing.T) {
	SkipIfNotRoot(t)
	for _, failed := range []bool{true, false} {
		r := &recorder{TB: t, failed: failed}
		f := New(r, testbed.Options{Prefix: prefix, Backends: 1})
		be := f.Backends[0]
		p, err := f.Start(be, "sh", "-c", "echo hello from "+be.Name+"; exec sleep 1000")
		if err != nil {
			r.runCleanups()
			t.Fatal(err)
		}
		if err := p.WaitForLog("hello", 5*time.Second); err != nil {
			r.runCleanups()
			t.Fatal(err)
		}
		r.runCleanups()
		if !p.Exited() {
			t.Errorf("failed %v: process still running after the cleanup", failed)
		}
		want := "testbed: output of sh on be0:\nhello from be0\n"
		logged := strings.Join(r.logs, "\n")
		if failed && logged != want {
			t.Errorf("failed test: logged %q, want %q", logged, want)
		}
		if !failed && logged != "" {
			t.Errorf("passed test: logged %q, want nothing", logged)
		}
	}
}
