package testbed

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
)

// Close tears the fleet down: stops the processes it started, kills anything
// else left in its namespaces, removes links and namespaces, unmounts PinDir
// and removes Dir. It works after a partial New, is safe to call twice and
// returns every error it met.
func (f *Fleet) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return f.err
	}
	f.closed = true
	procs := f.procs
	f.mu.Unlock()

	var errs []error
	var wg sync.WaitGroup
	perr := make([]error, len(procs))
	for i, p := range procs {
		wg.Go(func() {
			if err := p.Stop(); err != nil && !isExitError(err) {
				perr[i] = fmt.Errorf("stop %s on %s: %w", p.Name, p.Host.Name, err)
			}
		})
	}
	wg.Wait()
	errs = append(errs, perr...)

	hosts := []*Host{f.Switch, f.Client, f.Router}
	hosts = append(hosts, f.LBs...)
	hosts = append(hosts, f.Backends...)
	for _, h := range hosts {
		if h != nil {
			errs = append(errs, killNetnsPids(h.NS))
		}
	}

	for _, l := range f.xdpLinks {
		errs = append(errs, l.Close())
	}
	f.xdpLinks = nil
	if f.xdp != nil {
		errs = append(errs, f.xdp.Close())
		f.xdp = nil
	}

	// Delete the veths explicitly: namespace teardown frees them
	// asynchronously, deleting them here makes Close synchronous. They are
	// in the namespaces the hosts join: the router's and the switch's, or
	// lb0's in a point-to-point fleet.
	var ups []*Host
	for _, h := range hosts {
		if h != nil && h.up != nil && !slices.Contains(ups, h.up) {
			ups = append(ups, h.up)
		}
	}
	if f.Switch != nil && !slices.Contains(ups, f.Switch) {
		ups = append(ups, f.Switch)
	}
	for _, up := range ups {
		if up.ns >= 0 {
			errs = append(errs, up.deleteLinks(hosts[1:]))
		}
	}
	for _, h := range hosts {
		if h == nil {
			continue
		}
		if h.ns >= 0 {
			h.ns.Close()
			h.ns = -1
		}
		errs = append(errs, deleteNamedNS(h.NS))
	}

	if f.PinDir != "" {
		if err := unmount(f.PinDir); err != nil {
			errs = append(errs, err)
		} else {
			f.PinDir = ""
		}
	}
	if f.Dir != "" && f.PinDir == "" {
		errs = append(errs, os.RemoveAll(f.Dir))
	}

	if f.lock != nil {
		errs = append(errs, os.Remove(f.lock.Name()))
		errs = append(errs, f.lock.Close())
		unregisterLive(f.Prefix, f.ID)
	}

	err := errors.Join(errs...)
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
	return err
}

// deleteLinks deletes the peers of hosts that are in up's namespace, and
// the bridge if up is the switch.
func (up *Host) deleteLinks(hosts []*Host) error {
	nh, err := up.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	var errs []error
	for _, h := range hosts {
		if h == nil || h.up != up || h.Peer == "" {
			continue
		}
		l, err := nh.LinkByName(h.Peer)
		if err != nil {
			continue // never made, or already gone
		}
		if err := nh.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", h.Peer, err))
		}
	}
	if up == up.fleet.Switch {
		if l, err := nh.LinkByName(up.Link); err == nil {
			if err := nh.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("delete %s: %w", up.Link, err))
			}
		}
	}
	return errors.Join(errs...)
}
