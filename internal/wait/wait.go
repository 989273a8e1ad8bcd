// Package wait polls a condition until it holds: the one way tests (and the test bed) wait
// for something to happen, instead of sleeping for a guessed time.
package wait

import (
	"errors"
	"fmt"
	"time"
)

// ErrTimeout is wrapped by the error Until returns when the condition did not hold in time.
var ErrTimeout = errors.New("timed out")

// Until calls cond at once and then every interval until cond says done, or timeout has
// passed since the first call. cond runs on the caller's goroutine, so a test may call
// t.Fatal in it.
//
//   - done: Until returns cond's error at once; nil means the condition holds, an error
//     means it never will (a process exited, a context ended) and waiting stops.
//   - not done, with an error: a failed attempt (a connection refused, a link not there
//     yet). Until tries again, and on timeout wraps the last such error.
//
// On timeout the error wraps ErrTimeout. cond is always called at least once, and once more
// at the deadline, so a timeout of 0 checks the condition once.
func Until(timeout, interval time.Duration, cond func() (done bool, err error)) error {
	if interval <= 0 {
		return fmt.Errorf("wait: interval %v, want > 0", interval)
	}
	deadline := time.Now().Add(timeout)
	for {
		done, err := cond()
		if done {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			if err != nil {
				return fmt.Errorf("%w after %v: %w", ErrTimeout, timeout, err)
			}
			return fmt.Errorf("%w after %v", ErrTimeout, timeout)
		}
		time.Sleep(min(interval, left))
	}
}
