// Package health probes backends and keeps one rise/fall state machine per
// backend and VIP port. It knows nothing of the rest of lbd: the daemon hands it
// Targets with Set, reads States (or listens to OnChange) and decides what to do
// with them (the cluster's quorum, the rings).
//
// # State machine and the initial state
//
// A target starts Unknown, and Unknown counts as up (State.Up is true):
//
//	Unknown ──1 success──────────────► Up
//	Unknown ──fall failures in a row─► Down
//	Up      ──fall failures in a row─► Down
//	Down    ──rise successes in a row► Up
//
// Counts are of consecutive results only; an opposite result resets them, so a
// backend that alternates never changes state (failures counted cumulatively made
// loxilb's endpoints flap, loxilb#1087).
//
// Why not start Down: a restarted or upgraded LB node would then serve nothing
// for rise × interval (2s by default) on every VIP, though its backends were
// serving a moment earlier and the flows of its previous run are still arriving.
// Starting Unknown-as-up keeps them served, and a backend that really is dead is
// dropped after fall × interval, the same bound as for one that dies later. One
// success is enough to leave Unknown: the target is already served, waiting for
// rise successes would change nothing but the label. Targets added to a running
// checker start Unknown too; a caller that wants "probed before served" for
// those can require Status == StatusUp rather than State.Up.
//
// OnChange is called on every Status change, Unknown → Up included. The
// lbd_health_transitions_total counter counts only changes of State.Up (served
// or not), so a restart does not show 10,000 "transitions" to up.
//
// A target whose Spec.Type is "none" is never probed and is Up. A target whose
// spec does not validate is never probed and is Down with the error in LastErr
// (the configuration is validated before it gets here; this is the backstop).
//
// # Probes
//
//   - tcp: a TCP handshake. The socket is driven directly (socket, connect, wait
//     on the runtime poller, TCP_INFO) rather than through net.Dialer, which also
//     fetches both addresses and sets TCP_NODELAY and keep-alive options on a
//     connection that is closed at once. It is closed with SO_LINGER 0, so the
//     backend gets a reset and this node keeps no TIME_WAIT socket per probe
//     (10,000 probes/s would hold ~600,000); HAProxy's checks do the same.
//   - http, https: one request on a fresh connection (Connection: close, no
//     pool, no keep-alive), Method (GET) and Path (/) with the Host header (the
//     target's address by default); the status must equal ExpectStatus (200) and,
//     if ExpectBody is set, the first 64 KiB of the body must contain it.
//     https does not verify the certificate: backends are addressed by IP, so a
//     certificate for the service's name would never match, and the probe asks
//     whether the service answers, not whether it is the right server (the LB
//     never terminates TLS; clients verify the certificate they are given). When
//     Host is a name it is also sent as SNI.
//   - udp: Payload in one datagram on a connected socket; the first reply must
//     contain ExpectReply (any reply if empty). An ICMP port unreachable fails the
//     probe at once instead of at the timeout. A DNS query is a good payload.
//
// A probe socket carries SO_MARK when Target.Mark is not 0 (CAP_NET_ADMIN needed),
// so that probes through the tunnel can be told apart by policy routing or tc.
//
// # Scheduling
//
// Each target is probed every Interval from a random phase drawn when it is
// added (or changed), uniform over the interval: targets added together make a
// steady stream of targets/interval probes per second, not a burst, and keep it.
// Timeout is at most Interval, so a target never has two probes in flight.
// One scheduler goroutine keeps the targets in a min-heap by due time and starts
// each due probe in a short-lived goroutine, at most MaxInFlight (8192) at once;
// an idle target costs a heap slot, not a goroutine and a timer. A probe that
// starts late is followed by the next one on the original grid; a checker that
// is a whole interval behind probes at once rather than bunching missed slots.
// A target changed while its probe is in flight has that result dropped and is
// scheduled afresh (a new phase) when the old probe ends, at most its timeout.
// Run's context cancels in-flight probes; Run returns when every goroutine it
// started has ended.
//
// # Metrics (on Options.Registerer only)
//
//	lbd_health_probe_duration_seconds{vip,type}   histogram, every probe, failed ones too
//	lbd_health_probes_total{vip,result}           result: success, failure, timeout
//	lbd_health_transitions_total{vip,backend,to}  to: up, down; backend "addr:port"
//	lbd_health_probe_lag_seconds                  histogram, scheduled → actual start
//
// The lag histogram shows whether the checker keeps up: its tail above 100ms
// should stay empty. The series of a removed target's transitions are deleted.
//
// # Scale
//
// 10,000 TCP targets at a 1s interval (500ms timeout), each its own address
// 127.77.x.y:9000 on loopback, listeners in a child process, measured over 10s
// after a 2s warm-up on this 2-core VM (Go 1.26.8):
//
//	go test -run XXX -bench BenchmarkScale -benchtime 1x ./pkg/health
//	LBD_HEALTH_SCALE=1 go test -run TestScale -v ./pkg/health   # the same, asserting it keeps up
//
//	backends up; the rest of the machine    runs  probes/s     late >100ms       checker CPU  µs/probe  RSS MiB
//	quiet (everything else ≤ 0.4 cores)     4     9999-10000   0 in all          0.51-0.63    51-63     29-32
//	busy (0.9-1.4 cores, one busy loop or   14    8313-10484   0 in 5, <10% in   0.44-0.62    45-60     28-88
//	  other sessions' builds and tests)                        9, up to 87%
//	saturated (two busy loops beside it)    8     6627-10080   <0.1% in 2,       0.46-0.72    46-82     30-96
//	                                                           21-99% in 6
//	backends all timing out: quiet          1     10004        0                 0.63         63        93
//	backends all timing out: busy           3     9550-9991    18-44%            0.65-0.74    68-75     120-146
//
// Late means started more than 100ms after the scheduled time. "Checker CPU" is getrusage user+sys
// of the test process over wall time. About 62% of it is in the kernel, and on
// loopback that includes the backends' half of every handshake, which in
// production runs on the backends; a bare syscall loop (socket, SO_LINGER,
// connect, TCP_INFO, close) costs ~40µs/probe here. The listeners took
// 0.15-0.2 cores. "Backends all timing out" is LBD_HEALTH_SCALE_DEAD=1: 5,000
// probes in flight.
//
// So the checker keeps up when it gets its ~0.6 core. This VM is shared with
// other sessions; each run reports what everything else used and how many
// probes started late in each second. With a core or more taken by others,
// lateness usually comes in episodes of a few seconds that the checker
// catches up from; saturated, the kernel scheduler gives it ~0.55 cores, per-probe cost
// rises and it probes every target a little less often (down to ~7,000/s)
// instead of failing any: no run had a failed probe against a listening
// backend, because a deadline that fires before the poller reports a finished
// handshake is re-checked instead of counted as a timeout.
//
// The way there (same benchmark, git log pkg/health): one goroutine and timer
// per target with net.Dialer used 0.84-1.18 cores and started 6-30% of probes
// late, with up to 4,000 spurious timeouts per 10s (its listeners, then one
// goroutine each, took another 0.35-0.6 cores); the direct TCP connect brought
// the checker to 0.52-0.65 cores. With the direct connect, one goroutine per target and the
// heap scheduler used the same CPU, but the heap needs 30-50 MiB instead of
// 145-170 MiB and a few goroutines instead of 10,000 when idle, so it stayed.
package health
