package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
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
	SkipIfNotRoot(t)
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
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q %v", line, err)
	}
	var id string
	var sleepPid int
	if _, err := fmt.Sscanf(line, "ready %s %d", &id, &sleepPid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
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

	cmd.Process.Kill()
	cmd.Wait()

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
	SkipIfNotRoot(t)
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

func TestDoRestoresNamespace(t *testing.T) {
	f := newFleet(t, Options{Backends: 1})
	self := func() string {
		s, _ := os.Readlink("/proc/thread-self/ns/net")
		return s
	}
	var root string
	onThread := func(fn func()) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			fn()
		}()
		<-done
	}
	onThread(func() { root = self() })
	var inside string
	if err := f.Client.Do(func() error { inside = self(); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside == root {
		t.Fatalf("Do ran in the root namespace %s", root)
	}
	if err := f.Backends[0].Do(func() error { return errors.New("boom") }); err == nil || err.Error() != "boom" {
		t.Errorf("Do error %v, want boom", err)
	}
	func() {
		defer func() {
			if recover() != "panic in fn" {
				t.Error("panic not re-raised")
			}
		}()
		f.Client.Do(func() error { panic("panic in fn") })
	}()
	// Every thread the program runs on is back in the root namespace.
	for range 50 {
		onThread(func() {
			if got := self(); got != root {
				t.Errorf("thread in %s after Do, want %s", got, root)
			}
		})
	}
}
