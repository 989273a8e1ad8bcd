package testbed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbdproj/lbd/internal/wait"
)

const childEnv = "LBD_TESTBED_KILLED_CHILD"

// runKilledChild plays a test binary that gets killed: it builds a fleet,
// starts a process in it, says so and waits for SIGKILL.
func runKilledChild() {
	f, err := New(Options{Prefix: testPrefix, Backends: 1})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	p, err := f.Start(f.Backends[0], "sleep", "1000")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready", f.ID, p.Pid())
	select {}
}

func TestCleanupAfterKilledRun(t *testing.T) {
	skipIfNotRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child: %q %v", line, err)
	}
	var id string
	var sleepPid int
	if _, err := fmt.Sscanf(line, "ready %s %d", &id, &sleepPid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child said %q", line)
	}

	// The child's fleet is alive: another process's Cleanup and Leaks
	// must leave it alone. (A second process would do, but the lock is
	// what counts and this process does not hold it.)
	Cleanup(testPrefix)
	if got := len(namespacesOf(testPrefix, id)); got != 4 {
		t.Errorf("live child fleet: %d namespaces after Cleanup, want 4", got)
	}
	for _, l := range Leaks(testPrefix) {
		if strings.Contains(l, id) {
			t.Errorf("live child fleet reported as leak: %s", l)
		}
	}

	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	// Pdeathsig took the started process with it.
	err = wait.Until(5*time.Second, 10*time.Millisecond, func() (bool, error) {
		err := syscall.Kill(sleepPid, 0)
		return errors.Is(err, syscall.ESRCH) || isZombie(sleepPid), nil
	})
	if err != nil {
		t.Errorf("process %d of the killed run still alive: %v", sleepPid, err)
	}

	var leaked int
	for _, l := range Leaks(testPrefix) {
		if strings.Contains(l, id) {
			leaked++
		}
	}
	if leaked != 4 {
		t.Errorf("killed run: %d namespaces in Leaks, want 4", leaked)
	}

	Cleanup(testPrefix)
	if ns := namespacesOf(testPrefix, id); len(ns) > 0 {
		t.Errorf("after Cleanup: namespaces %v", ns)
	}
	if dirs := tempDirs(testPrefix)[id]; len(dirs) > 0 {
		t.Errorf("after Cleanup: temporary directories %v", dirs)
	}
	if _, err := os.Stat(lockPath(testPrefix, id)); !os.IsNotExist(err) {
		t.Errorf("after Cleanup: lock file (%v)", err)
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func TestNewFailsHalfwayAndCleansUp(t *testing.T) {
	skipIfNotRoot(t)
	var id string
	testHookHostBuilt = func(h *Host) error {
		id = h.fleet.ID
		if h.Name == "be1" {
			return errors.New("injected failure")
		}
		return nil
	}
	defer func() { testHookHostBuilt = nil }()
	f, err := New(Options{Prefix: testPrefix, Backends: 3})
	if err == nil {
		f.Close()
		t.Fatal("New succeeded despite the injected failure")
	}
	if !strings.Contains(err.Error(), "injected failure") {
		t.Errorf("error %v does not carry the cause", err)
	}
	if ns := namespacesOf(testPrefix, id); len(ns) > 0 {
		t.Errorf("namespaces left: %v", ns)
	}
	if dirs := tempDirs(testPrefix)[id]; len(dirs) > 0 {
		t.Errorf("temporary directories left: %v", dirs)
	}
	if isLiveHere(testPrefix, id) {
		t.Error("fleet still registered as live")
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	skipIfNotRoot(t)
	f, err := New(Options{Prefix: testPrefix, LBs: 1, Backends: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Start(f.Backends[0], "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	if leaks := Leaks(testPrefix); len(leaks) != 4 {
		t.Errorf("live fleet: Leaks = %v, want its 4 namespaces", leaks)
	}
	if left := f.Leftovers(); len(left) != 4+2 || !slices.Contains(left, f.Dir) || !slices.Contains(left, lockPath(testPrefix, f.ID)) {
		t.Errorf("live fleet: Leftovers = %v, want its 4 namespaces, directory and lock file", left)
	}
	pin, dir := f.PinDir, f.Dir
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if !p.Exited() {
		t.Error("process still running after Close")
	}
	if leaks := Leaks(testPrefix); len(leaks) > 0 {
		t.Errorf("after Close: Leaks = %v", leaks)
	}
	for _, path := range []string{pin, dir, lockPath(testPrefix, f.ID)} {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s still there (%v)", path, err)
		}
	}
	if mps := mountsUnder(dir); len(mps) > 0 {
		t.Errorf("still mounted: %v", mps)
	}
	if left := f.Leftovers(); len(left) > 0 {
		t.Errorf("after Close: Leftovers = %v", left)
	}
}

func TestRouterCloseRemovesEverything(t *testing.T) {
	skipIfNotRoot(t)
	f, err := New(Options{Prefix: testPrefix, Router: true, LBs: 1, Backends: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Start(f.Router, "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	leaks := Leaks(testPrefix)
	if len(leaks) != 5 || !slices.Contains(leaks, f.Router.NS) {
		t.Errorf("live fleet: Leaks = %v, want its 5 namespaces with %s", leaks, f.Router.NS)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if out, err := f.Router.Command(ctx, "ip", "-o", "link", "show", "eth1").CombinedOutput(); err != nil {
		t.Fatalf("router eth1: %v: %s", err, out)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if leaks := Leaks(testPrefix); len(leaks) > 0 {
		t.Errorf("after Close: Leaks = %v", leaks)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, f.Router.NS)); !os.IsNotExist(err) {
		t.Errorf("router namespace still there (%v)", err)
	}
}

// TestRouterFailsHalfwayAndCleansUp: a fleet with a router that fails
// while built leaves nothing behind either.
func TestRouterFailsHalfwayAndCleansUp(t *testing.T) {
	skipIfNotRoot(t)
	for _, at := range []string{"router", "client", "lb0"} {
		var id string
		testHookHostBuilt = func(h *Host) error {
			id = h.fleet.ID
			if h.Name == at {
				return errors.New("injected failure")
			}
			return nil
		}
		f, err := New(Options{Prefix: testPrefix, Router: true, Backends: 1})
		testHookHostBuilt = nil
		if err == nil {
			f.Close()
			t.Fatalf("at %s: New succeeded despite the injected failure", at)
		}
		if ns := namespacesOf(testPrefix, id); len(ns) > 0 {
			t.Errorf("at %s: namespaces left: %v", at, ns)
		}
	}
}

// TestPointToPointFailsHalfwayAndCleansUp: a point-to-point fleet that fails
// while built leaves nothing behind, wherever it fails.
func TestPointToPointFailsHalfwayAndCleansUp(t *testing.T) {
	skipIfNotRoot(t)
	for _, at := range []string{"lb0", "client", "be0"} {
		var fleet *Fleet
		testHookHostBuilt = func(h *Host) error {
			fleet = h.fleet
			if h.Name == at {
				return errors.New("injected failure")
			}
			return nil
		}
		f, err := New(Options{Prefix: testPrefix, PointToPoint: true})
		testHookHostBuilt = nil
		if err == nil {
			f.Close()
			t.Fatalf("at %s: New succeeded despite the injected failure", at)
		}
		if fleet == nil {
			t.Fatalf("at %s: no host built", at)
		}
		if left := fleet.Leftovers(); len(left) > 0 {
			t.Errorf("at %s: left behind %v", at, left)
		}
	}
}
