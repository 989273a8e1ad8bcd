package wait

import (
	"errors"
	"testing"
	"time"
)

func TestUntilHoldsAtOnce(t *testing.T) {
	calls := 0
	err := Until(time.Hour, time.Hour, func() (bool, error) {
		calls++
		return true, nil
	})
	if err != nil || calls != 1 {
		t.Fatalf("Until = %v after %d calls, want nil after 1", err, calls)
	}
}

func TestUntilHoldsLater(t *testing.T) {
	calls := 0
	err := Until(time.Minute, time.Millisecond, func() (bool, error) {
		calls++
		return calls == 5, nil
	})
	if err != nil || calls != 5 {
		t.Fatalf("Until = %v after %d calls, want nil after 5", err, calls)
	}
}

// A failed attempt is retried, and the last one is in the timeout's error.
func TestUntilTimesOutWithTheLastError(t *testing.T) {
	errRefused := errors.New("refused")
	const timeout, interval = 50 * time.Millisecond, 10 * time.Millisecond
	calls := 0
	start := time.Now()
	err := Until(timeout, interval, func() (bool, error) {
		calls++
		return false, errRefused
	})
	took := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, errRefused) {
		t.Fatalf("Until = %v, want ErrTimeout wrapping the last attempt's error", err)
	}
	if took < timeout {
		t.Errorf("gave up after %v, before the timeout %v", took, timeout)
	}
	// every pause is at least the interval (or what is left of the timeout)
	if max := int(timeout/interval) + 2; calls < 2 || calls > max {
		t.Errorf("%d calls in %v every %v, want 2..%d", calls, timeout, interval, max)
	}
}

func TestUntilTimesOutWithoutError(t *testing.T) {
	err := Until(0, time.Millisecond, func() (bool, error) { return false, nil })
	if !errors.Is(err, ErrTimeout) || err.Error() != "timed out after 0s" {
		t.Fatalf("Until = %v, want %q", err, "timed out after 0s")
	}
}

// done with an error stops at once: the condition will never hold.
func TestUntilStopsOnFinalError(t *testing.T) {
	errExited := errors.New("exited")
	calls := 0
	err := Until(time.Hour, time.Millisecond, func() (bool, error) {
		calls++
		return calls == 2, errExited
	})
	if err != errExited || calls != 2 {
		t.Fatalf("Until = %v after %d calls, want %v after 2", err, calls, errExited)
	}
}

func TestUntilRejectsNoInterval(t *testing.T) {
	called := false
	if err := Until(time.Second, 0, func() (bool, error) { called = true; return true, nil }); err == nil || called {
		t.Fatalf("interval 0: Until = %v, cond called %v; want an error and no call", err, called)
	}
}
