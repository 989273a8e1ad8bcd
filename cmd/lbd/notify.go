package main

// Telling systemd what lbd is doing (Type=notify, sd_notify(3)): READY=1 once the data path
// is attached and the VIPs are written, RELOADING=1 … READY=1 around a reload, STOPPING=1.
// Outside systemd (no $NOTIFY_SOCKET) nothing is sent.

import (
	"log/slog"
	"strings"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notify sends the lines of one sd_notify message; a failure is logged, never fatal (the
// service manager may be gone while lbd keeps forwarding).
func notify(log *slog.Logger, lines ...string) {
	msg := strings.Join(lines, "\n")
	if _, err := sd.SdNotify(false, msg); err != nil {
		log.Warn("sd_notify", "msg", msg, "err", err)
	}
}

// notifyReloading is RELOADING=1 with the CLOCK_MONOTONIC time systemd 253 and later
// require beside it (they ignore a reload notification without one).
func notifyReloading(log *slog.Logger) {
	notify(log, sd.SdNotifyReloading, strings.TrimSuffix(sd.SdNotifyMonotonicUsec(), "\n"))
}
