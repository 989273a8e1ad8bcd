package testbed

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lbdproj/lbd/internal/wait"
)

// Process is a long-running program started by Fleet.Start in a host's
// namespace. Its stdout and stderr go to one buffer (and a file when
// Options.LogDir is set).
type Process struct {
	Host *Host
	Name string
	Cmd  *exec.Cmd

	mu   sync.Mutex
	out  bytes.Buffer
	file *os.File

	done chan struct{}
	err  error // from Cmd.Wait, set before done closes
}

// Start runs name with args in h's namespace (`ip netns exec`). The process
// gets its own process group and SIGKILL when this program dies; Close stops
// it.
func (f *Fleet) Start(h *Host, name string, args ...string) (*Process, error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, errors.New("start: fleet closed")
	}
	f.nprocs++
	n := f.nprocs
	f.mu.Unlock()

	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = stopTimeout // don't hang on grandchildren holding the pipe
	p := &Process{Host: h, Name: filepath.Base(name), Cmd: cmd, done: make(chan struct{})}
	if f.opts.LogDir != "" {
		path := filepath.Join(f.opts.LogDir, fmt.Sprintf("%s-%s-%d.log", h.Name, p.Name, n))
		file, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("start %s: log file: %w", p.Name, err)
		}
		p.file = file
	}
	cmd.Stdout = (*processWriter)(p)
	cmd.Stderr = cmd.Stdout

	if err := spawn(cmd); err != nil {
		if p.file != nil {
			p.file.Close()
		}
		return nil, fmt.Errorf("start %s on %s: %w", p.Name, h.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		if p.file != nil {
			p.file.Close()
		}
		close(p.done)
	}()

	f.mu.Lock()
	f.procs = append(f.procs, p)
	closed := f.closed
	f.mu.Unlock()
	if closed { // Close ran meanwhile and did not see p
		_ = p.Stop() // it is being thrown away: how it ended does not matter
		return nil, errors.New("start: fleet closed")
	}
	return p, nil
}

// Processes returns the processes Start started, in order, running or not.
func (f *Fleet) Processes() []*Process {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.procs)
}

// Pdeathsig fires when the thread that forked the child exits, not the
// process. Go threads exit when a goroutine locked to one ends without
// unlocking (a common way to discard a thread whose namespace was changed),
// so fork from one thread that lives as long as the program.
var (
	spawnOnce sync.Once
	spawnReq  chan func()
)

func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReq = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: this thread is the parent
			for fn := range spawnReq {
				fn()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnReq <- func() { errc <- cmd.Start() }
	return <-errc
}

type processWriter Process

func (w *processWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out.Write(b)
	if w.file != nil {
		_, _ = w.file.Write(b) // best effort: the buffer is the record
	}
	return len(b), nil
}

var _ io.Writer = (*processWriter)(nil)

// Output returns everything the process wrote so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Pid is the process's ID (the program's own: `ip netns exec` execs it).
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to end and returns Cmd.Wait's error.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process's group.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	return syscall.Kill(-p.Pid(), sig)
}

// Stop sends SIGTERM to the process group, then SIGKILL if the process has
// not ended within 5s, and returns Cmd.Wait's error (an *exec.ExitError
// when the program exited non-zero or died of the signal).
func (p *Process) Stop() error {
	if p.Exited() {
		return p.err
	}
	_ = p.Signal(syscall.SIGTERM) // it may have exited on its own meanwhile
	select {
	case <-p.done:
		return p.err
	case <-time.After(stopTimeout):
	}
	_ = p.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
		return p.err
	case <-time.After(stopTimeout):
		return fmt.Errorf("pid %d still running after SIGKILL", p.Pid())
	}
}

// WaitForLog polls the output until it contains substr. It fails early when
// the process exits first, and on timeout; both errors carry the output's tail.
func (p *Process) WaitForLog(substr string, timeout time.Duration) error {
	err := wait.Until(timeout, 20*time.Millisecond, func() (bool, error) {
		exited := p.Exited() // before reading, so late output is seen
		if strings.Contains(p.Output(), substr) {
			return true, nil
		}
		if exited {
			return true, fmt.Errorf("%s on %s exited (%v) before logging %q; output:\n%s", p.Name, p.Host.Name, p.err, substr, tail(p.Output()))
		}
		return false, nil
	})
	if errors.Is(err, wait.ErrTimeout) {
		return fmt.Errorf("%s on %s did not log %q within %v; output:\n%s", p.Name, p.Host.Name, substr, timeout, tail(p.Output()))
	}
	return err
}

func tail(s string) string {
	const max = 4096
	if len(s) > max {
		return "…" + s[len(s)-max:]
	}
	return s
}

func isExitError(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee)
}
