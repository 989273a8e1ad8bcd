package daemon

// The control loop: probe results and cluster news in, rings out.

import (
	"context"
	"time"

	"github.com/lbdproj/lbd/pkg/cluster"
)

// kick asks the reconcile loop to look at health again; it never blocks.
func (d *Daemon) kick() {
	select {
	case d.dirty <- struct{}{}:
	default:
	}
}

// Run probes the backends, takes part in the cluster and keeps the rings in line with the
// verdict until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	go func() {
		// the checker runs once per daemon, until ctx ends; an error means it never started
		if err := d.checker.Run(ctx); err != nil {
			d.log.Error("health checker", "err", err)
		}
	}()
	if fs := d.flowSync.Load(); fs != nil {
		go fs.Run(ctx)
	}
	d.kick()
	tick := time.NewTicker(resolveRetry)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := d.refreshNextHops(ctx); err != nil {
				d.log.Error("refresh next hops", "err", err)
			}
		case <-d.dirty:
			if err := d.reconcile(ctx); err != nil {
				d.log.Error("apply health verdict", "err", err)
			}
		}
	}
}

// reconcile publishes the local probe results, takes the verdict (the cluster's, or the
// local one for a node alone), rebuilds the rings when a backend changed state, and tells
// the announcer what the node can announce.
func (d *Daemon) reconcile(ctx context.Context) error {
	local, errs := localResults(d.checker.States())
	verdict, by := local, "local probes"
	if d.cluster != nil {
		d.cluster.SetLocal(local)
		verdict, by = d.cluster.Verdict(), "cluster verdict"
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.takeVerdictLocked(ctx, local, errs, verdict, by) {
		if err := d.applyLocked(ctx, d.cfg); err != nil {
			return err
		}
	}
	var cs *cluster.Status
	if d.cluster != nil {
		d.cluster.SetFingerprint(d.fingerprintLocked())
		st := d.cluster.Status()
		cs = &st
	}
	d.announceLocked(cs)
	return nil
}
