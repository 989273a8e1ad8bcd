package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/lbdproj/lbd/pkg/config"
	"github.com/lbdproj/lbd/pkg/consistenthash"
)

// traffic is what the generator sends.
type traffic struct {
	name  string
	flows uint32 // gen.c: 0 one tuple, ~0 never repeat, else cycle over this many per CPU
	syn   bool   // SYNs instead of ACKs
	gen   *genObjects
}

// lbProg is a program on the LB's gen-facing veth.
type lbProg struct {
	name string
	prog *ebpf.Program
	isLB bool // xdp_lb: its counters are read
}

// cell is one figure: a program on the LB, a traffic pattern, a number of generator threads.
// Every round visits every cell, so a burst of other work on the machine hits them alike.
type cell struct {
	prog, traffic, threads int
	res                    result
}

// bench is the topology with every program loaded and attached.
type bench struct {
	t        *topo
	sink     sinkObjects
	patterns []*traffic
	lb       *dataplane.LB
	ringAlg  consistenthash.Algorithm
	xl       link.Link // xdp_lb's XDP link, where the floors take its place
	progs    []lbProg  // xdp_lb first, then the floors
	cur      int       // the one in xl
	closers  []func() error
}

// setUp builds the topology: the sink counting on its veth, a generator per traffic
// pattern, xdp_lb on lb's gen-facing veth and, with -floors, the floors beside it.
func setUp() (_ *bench, err error) {
	t, err := newTopo()
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	b := &bench{t: t}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.close())
		}
	}()
	if err := b.loadSink(); err != nil {
		return nil, err
	}
	if err := b.loadGenerators(); err != nil {
		return nil, err
	}
	if err := b.openLB(); err != nil {
		return nil, err
	}
	if *floors {
		if err := b.loadFloors(); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// close detaches and closes everything, last loaded first, then removes the topology.
func (b *bench) close() error {
	var errs []error
	if b.cur != 0 {
		if err := b.xl.Update(b.progs[0].prog); err != nil {
			errs = append(errs, fmt.Errorf("swap xdp_lb back: %w", err))
		}
	}
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	return errors.Join(append(errs, b.t.close())...)
}

// loadSink attaches the sink's count-and-drop program to its veth.
func (b *bench) loadSink() error {
	if err := loadSinkObjects(&b.sink, nil); err != nil {
		return fmt.Errorf("load sink: %w", err)
	}
	b.closers = append(b.closers, b.sink.Close)
	sl, err := attachXDP(b.t.sink, b.sink.XdpSink, b.t.sinkIfindex)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	b.closers = append(b.closers, sl.Close)
	return nil
}

// loadGenerators loads a generator for each traffic pattern.
func (b *bench) loadGenerators() error {
	b.patterns = []*traffic{
		{name: "same flow (LRU hit)", flows: 0},
		{name: fmt.Sprintf("%d flows/thread cycled", *cycled), flows: uint32(*cycled)},
		{name: "new flow every packet (LRU miss)", flows: ^uint32(0)},
		{name: "SYN flood (spoofed, guard on)", flows: ^uint32(0), syn: true},
	}
	for _, p := range b.patterns {
		g, err := newGen(b.t.lbInMAC, b.t.genMAC, p.flows, p.syn)
		if err != nil {
			return err
		}
		p.gen = g
		b.closers = append(b.closers, g.Close)
	}
	return nil
}

// openLB attaches xdp_lb to lb's gen-facing veth, with one VIP whose backends are behind
// the sink-facing one, and takes its XDP link.
func (b *bench) openLB() error {
	err := b.t.lb.Do(func() (err error) {
		b.lb, err = dataplane.OpenLB(dataplane.Config{
			Interface:   b.t.lbIn,
			PinDir:      filepath.Join(b.t.fleet.PinDir, "lbd"),
			HashSeed:    hashSeed,
			EncapSource: lbOut,
			MTU:         lbOutMTU,
			// the daemon's default guard, as an edge node runs it
			SynFloodThreshold: config.DefaultSynFloodThreshold,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("open xdp_lb: %w", err)
	}
	b.closers = append(b.closers, b.lb.Detach)
	if b.ringAlg, err = applyVIP(b.lb, b.t.sinkMAC, b.t.lbOutMAC, b.t.lbOutIfindex); err != nil {
		return err
	}
	// the floors take xdp_lb's place in its own XDP link for their turns
	xl, lbp, err := xdpLinkOf(b.t.lb, b.t.lbIn)
	if err != nil {
		return fmt.Errorf("xdp_lb's link: %w", err)
	}
	b.closers = append(b.closers, lbp.Close, xl.Close)
	b.xl = xl
	b.progs = []lbProg{{"xdp_lb", lbp, true}}
	return nil
}

// loadFloors loads the floors that take xdp_lb's place in turn.
func (b *bench) loadFloors() error {
	fwd, err := newFwd(b.t)
	if err != nil {
		return err
	}
	b.closers = append(b.closers, fwd.Close)
	b.progs = append(b.progs, lbProg{"floor: MAC rewrite + redirect", fwd.XdpFwdFloor, false},
		lbProg{"floor: IPIP push + redirect", fwd.XdpIpipFwdFloor, false})
	return nil
}

// cells lists what to measure: xdp_lb with every traffic pattern, each floor with the
// constant flow, each with every thread count.
func (b *bench) cells(threads []int) []*cell {
	var cells []*cell
	for _, n := range threads {
		for pi := range b.patterns {
			cells = append(cells, &cell{prog: 0, traffic: pi, threads: n})
		}
	}
	for pi := 1; pi < len(b.progs); pi++ {
		for _, n := range threads {
			cells = append(cells, &cell{prog: pi, traffic: 0, threads: n})
		}
	}
	return cells
}

// visitTime is the measured time of one visit to a cell.
func visitTime() time.Duration { return *duration / time.Duration(*rounds) }

// runRounds visits every cell once per round and adds up the results. Round 0 is not
// counted: it fills the flow table, so that round 1 does not see an LRU with free entries
// where the others evict.
func (b *bench) runRounds(cells []*cell) error {
	for round := range *rounds + 1 {
		if round == 0 {
			fmt.Fprintf(os.Stderr, "warm-up round:")
		} else {
			fmt.Fprintf(os.Stderr, "round %d/%d:", round, *rounds)
		}
		d := visitTime()
		if round == 0 {
			d = min(d, 200*time.Millisecond)
		}
		for _, c := range cells {
			r, err := b.visit(c, d)
			if err != nil {
				fmt.Fprintln(os.Stderr)
				return fmt.Errorf("%s, %s, %d threads: %w", b.progs[c.prog].name, b.patterns[c.traffic].name, c.threads, err)
			}
			if round > 0 {
				c.res.add(r)
			}
			fmt.Fprintf(os.Stderr, " %.2f", r.mpps())
		}
		fmt.Fprintln(os.Stderr, " Mpps")
	}
	return nil
}

// visit puts the cell's program in xdp_lb's link and measures its traffic for d.
func (b *bench) visit(c *cell, d time.Duration) (result, error) {
	if c.prog != b.cur {
		if err := b.xl.Update(b.progs[c.prog].prog); err != nil {
			return result{}, fmt.Errorf("swap in %s: %w", b.progs[c.prog].name, err)
		}
		b.cur = c.prog
	}
	return measure(b.t, b.patterns[c.traffic].gen, &b.sink, b.lb, b.progs[c.prog].isLB, c.threads, d)
}
