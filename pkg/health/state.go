package health

import "time"

// Status is where a target's state machine is.
//
//	           success                      rise successes in a row
//	Unknown ───────────► Up ◄──────────────────────────────────┐
//	   │                  │ fall failures in a row             │
//	   │ fall failures    ▼                                    │
//	   └───────────────► Down ─────────────────────────────────┘
//	    in a row
//
// Unknown counts as up: see the package documentation for why.
type Status uint8

const (
	StatusUnknown Status = iota // not yet confirmed either way; served
	StatusUp                    // served
	StatusDown                  // not served
)

func (s Status) String() string {
	switch s {
	case StatusUnknown:
		return "unknown"
	case StatusUp:
		return "up"
	case StatusDown:
		return "down"
	}
	return "invalid"
}

// Up reports whether a target in this status should receive traffic.
func (s Status) Up() bool { return s != StatusDown }

// State is a target's health as seen from this node.
type State struct {
	Status      Status
	Up          bool          // Status.Up(): Unknown and Up are served, Down is not
	Since       time.Time     // when Status last changed, or when the target was added
	LastErr     string        // the last probe's error; "" after a success
	Consecutive int           // consecutive results equal to the last one (successes or failures)
	LastLatency time.Duration // how long the last probe took, success or failure
	Probes      uint64        // probes completed since the target was added
}

// machine is the pure rise/fall state machine of one target. Counts are of
// consecutive results only: any opposite result resets them (never cumulative).
type machine struct {
	status Status
	oks    int // consecutive successes
	fails  int // consecutive failures
}

// observe records one probe result and returns the status before it and whether
// the status changed.
func (m *machine) observe(ok bool, rise, fall int) (from Status, changed bool) {
	from = m.status
	if ok {
		m.oks++
		m.fails = 0
	} else {
		m.fails++
		m.oks = 0
	}
	switch m.status {
	case StatusUnknown:
		// Already served: the first success only confirms it.
		if ok {
			m.status = StatusUp
		} else if m.fails >= fall {
			m.status = StatusDown
		}
	case StatusUp:
		if !ok && m.fails >= fall {
			m.status = StatusDown
		}
	case StatusDown:
		if ok && m.oks >= rise {
			m.status = StatusUp
		}
	}
	return from, m.status != from
}

// consecutive is State.Consecutive.
func (m *machine) consecutive() int { return max(m.oks, m.fails) }
