// Package flowsync keeps established flows on their backends when the rings change and the
// router then moves the flows to another LB node (docs/ARCHITECTURE.md, "Flow sync").
//
// Consistent hashing alone keeps a flow on its backend when either the backends change
// (the node that holds the flow remembers it) or the node changes (every node computes the
// same ring), not both. Each node therefore scans its flow tables for the flows at risk,
// those whose recorded backend its current rings no longer pick, and shares exactly those
// with the other nodes, which write them into their adopted-flow maps: a moved flow that
// misses a node's flow table finds its backend there.
//
// Each round (every Interval, or at once after the rings changed) a node sends the other
// nodes what changed since the last round: flows newly at risk (share) and flows no longer
// at risk (withdraw). Every Refresh, and to a node it has not synced with yet (a new or
// restarted member, or one a send failed to), it sends its whole set. A receiver keeps a
// flow while some node shares it, and forgets it when the last withdraws it or stays silent
// for TTL. So the bandwidth follows the flows at risk, not the flow tables.
package flowsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbdproj/lbd/internal/dataplane"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options.
const (
	DefaultInterval = time.Second
	DefaultRefresh  = 30 * time.Second
	// scanShare bounds the CPU the scans take: a round waits at least scanShare times as
	// long as its scan took (a 50 ms scan of a full table runs at most once a second).
	scanShare = 20
	inboxSize = 256
)

// DataPath is the data path's side (internal/dataplane: a FlowScanner, the Adopted maps and
// the LB's counters).
type DataPath interface {
	// AtRisk visits the flows at risk in the flow tables.
	AtRisk(visit func(dataplane.SharedFlow)) (dataplane.ScanStats, error)
	// PutAdopted writes flows into the adopted-flow maps; those whose VIP or backend this
	// node does not serve come back unwritten.
	PutAdopted(flows []dataplane.SharedFlow) (unresolved []dataplane.SharedFlow, err error)
	DeleteAdopted(flows []dataplane.Flow) error
	// ReadAdopted is what a previous run left in the (pinned) adopted-flow maps.
	ReadAdopted() ([]dataplane.SharedFlow, error)
	FlowSyncEvents() (map[string]uint64, error)
}

// Transport reaches the other LB nodes (pkg/cluster: memberlist streams, encrypted).
type Transport interface {
	// Peers are the live nodes other than this one, by name.
	Peers() []string
	// Send delivers msg to node reliably (a stream) or fails.
	Send(node string, msg []byte) error
}

// Options configure a Syncer.
type Options struct {
	Node      string // this node's name in the cluster
	DataPath  DataPath
	Transport Transport
	Interval  time.Duration // between rounds; default DefaultInterval
	Refresh   time.Duration // whole set to every node; default DefaultRefresh
	TTL       time.Duration // a receiver forgets a flow nobody shared for this long; default 3 × Refresh + Interval
	MaxFlows  int           // adopted flows per family; default dataplane.MaxAdoptedFlows
	Enabled   bool          // off: no scan, nothing sent, received flows ignored
	// Registerer receives the metrics; nil keeps them private.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time // default time.Now
}

// Status is what `lbd status` shows of flow sync.
type Status struct {
	Enabled    bool      `json:"enabled"`
	AtRisk     int       `json:"at_risk"`    // flows at risk in this node's tables, at the last scan
	Shared     int       `json:"shared"`     // flows this node shares now
	Adopted    int       `json:"adopted"`    // flows other nodes shared, in this node's data path
	Unresolved int       `json:"unresolved"` // flows shared with this node for VIPs or backends it does not serve
	Peers      int       `json:"peers"`      // nodes this node has sent its whole set to
	Scanned    int       `json:"scanned"`    // flow-table entries read by the last scan
	ScanTime   float64   `json:"scan_seconds"`
	LastRound  time.Time `json:"last_round"`
	// Rings names the rings the last round scanned (the fingerprint given to Changed
	// before it began): once every node's equals its current rings', the flows at risk
	// of that change are shared.
	Rings         string  `json:"rings"`
	SentBytes     uint64  `json:"sent_bytes"`
	ReceivedBytes uint64  `json:"received_bytes"`
	SentRate      float64 `json:"sent_bytes_per_second"` // over the last rounds
	ReceivedRate  float64 `json:"received_bytes_per_second"`
	AdoptedHits   uint64  `json:"adopted_hits"` // packets of moved flows that found their backend here
}

// Syncer runs flow sync for one LB node.
type Syncer struct {
	o     Options
	log   *slog.Logger
	m     *metrics
	table *table

	inbox   chan []byte
	changed chan struct{}
	enable  chan bool

	// the loop's own state
	enabled   bool
	announced map[dataplane.Flow]dataplane.SharedFlow // what the peers were last told
	synced    map[string]bool                         // peers that have the whole set
	refreshed time.Time
	nextRound time.Time
	rates     []rateSample

	sent, received atomic.Uint64 // message bytes

	mu     sync.Mutex // guards status and rings
	status Status
	rings  string // the fingerprint Changed gave last
}

type rateSample struct {
	at             time.Time
	sent, received uint64
}

// New makes a Syncer; Run runs it. Flows a previous run left in the data path are taken
// back (they live for TTL unless shared again).
func New(o Options) (*Syncer, error) {
	if o.Node == "" || o.DataPath == nil || o.Transport == nil {
		return nil, errors.New("flowsync: node name, data path and transport are required")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.TTL <= 0 {
		o.TTL = 3*o.Refresh + o.Interval
	}
	if o.MaxFlows <= 0 {
		o.MaxFlows = dataplane.MaxAdoptedFlows
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Syncer{o: o, log: o.Logger.With("component", "flowsync"), table: newTable(o.MaxFlows, o.TTL),
		inbox: make(chan []byte, inboxSize), changed: make(chan struct{}, 1), enable: make(chan bool, 1),
		announced: map[dataplane.Flow]dataplane.SharedFlow{}, synced: map[string]bool{}}
	s.m = newMetrics(s)
	if err := s.m.register(reg); err != nil {
		return nil, fmt.Errorf("flowsync: register metrics: %w", err)
	}
	if o.Enabled {
		s.setEnabled(true)
	} else {
		s.purge()
	}
	return s, nil
}

// purge removes the adopted flows a previous run left in the pinned maps, when this run
// starts with sync off.
func (s *Syncer) purge() {
	flows, err := s.o.DataPath.ReadAdopted()
	if err != nil {
		s.log.Warn("read adopted flows left by a previous run", "err", err)
	}
	gone := make([]dataplane.Flow, len(flows))
	for i, f := range flows {
		gone[i] = f.Flow
	}
	s.apply(change{remove: gone})
}

// Receive takes a message from another node. It never blocks: when the queue is full the
// message is dropped and counted (the sender's next refresh repeats it).
func (s *Syncer) Receive(msg []byte) {
	select {
	case s.inbox <- msg:
	default:
		s.m.dropped.Inc()
	}
}

// Changed says this node's VIPs, backends or rings changed, to rings (a fingerprint): the
// adopted flows are resolved again and a round runs at once.
func (s *Syncer) Changed(rings string) {
	s.mu.Lock()
	s.rings = rings
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// SetEnabled turns sync on or off (cluster.flow_sync). Off, the node forgets the flows it
// adopted and stops sharing; the others forget its flows after TTL.
func (s *Syncer) SetEnabled(on bool) {
	for {
		select {
		case s.enable <- on:
			return
		default:
		}
		select { // replace a pending value: the last word wins
		case <-s.enable:
		default:
		}
	}
}

// Status returns a snapshot.
func (s *Syncer) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	if ev, err := s.o.DataPath.FlowSyncEvents(); err == nil {
		st.AdoptedHits = ev["hit"]
	}
	return st
}

// Run runs rounds and applies what the other nodes send until ctx ends.
func (s *Syncer) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-s.inbox:
			s.receive(msg)
			continue
		case on := <-s.enable:
			s.setEnabled(on)
		case <-s.changed:
			s.resolveAgain()
		case <-timer.C:
		}
		s.round(ctx)
		timer.Reset(max(time.Until(s.nextRound), 0))
	}
}

func (s *Syncer) setEnabled(on bool) {
	if on == s.enabled {
		return
	}
	s.enabled = on
	if !on {
		s.apply(change{remove: s.table.clear()})
		clear(s.announced)
		clear(s.synced)
	} else {
		s.restore()
	}
	s.log.Info("flow sync", "enabled", on)
	s.updateStatus(func(st *Status) { st.Enabled = on })
}

// restore takes back the adopted flows a previous lbd left in the pinned maps.
func (s *Syncer) restore() {
	flows, err := s.o.DataPath.ReadAdopted()
	if err != nil {
		s.log.Warn("read adopted flows left by a previous run", "err", err)
		return
	}
	s.table.restore(flows, s.o.Now())
	s.apply(change{})
	if len(flows) > 0 {
		s.log.Info("adopted flows taken back from the pinned maps", "flows", len(flows))
	}
}

// receive applies one message from another node.
func (s *Syncer) receive(msg []byte) {
	s.received.Add(uint64(len(msg)))
	if !s.enabled {
		return
	}
	u, err := Decode(msg)
	if err != nil {
		s.m.badMsgs.Inc()
		s.log.Warn("drop flow sync message", "err", err)
		return
	}
	if u.Node == s.o.Node {
		return
	}
	c, full := s.table.share(u.Node, u.Share, s.o.Now())
	if full > 0 {
		s.m.full.Add(float64(full))
	}
	withdrawn := make([]dataplane.Flow, len(u.Withdraw))
	for i, f := range u.Withdraw {
		withdrawn[i] = f.Flow
	}
	c.remove = append(c.remove, s.table.withdraw(u.Node, withdrawn).remove...)
	s.apply(c)
}

// resolveAgain writes every adopted flow again: this node's backend ids or its VIPs
// changed, so flows resolve to other ids, or resolve now, or no longer do.
func (s *Syncer) resolveAgain() {
	if s.enabled {
		s.apply(change{put: s.table.all()})
	}
}

// apply tells the data path what changed in the table: removals, then writes.
func (s *Syncer) apply(c change) {
	if len(c.remove) > 0 {
		if err := s.o.DataPath.DeleteAdopted(c.remove); err != nil {
			s.log.Warn("remove adopted flows", "err", err)
		}
	}
	if len(c.put) > 0 {
		unresolved, err := s.o.DataPath.PutAdopted(c.put)
		if err != nil {
			s.log.Warn("write adopted flows", "err", err)
			// what was not written is not held: treat it all as unresolved
			unresolved = c.put
		}
		if stale := s.table.resolved(c.put, unresolved); len(stale) > 0 {
			if err := s.o.DataPath.DeleteAdopted(stale); err != nil {
				s.log.Warn("remove adopted flows", "err", err)
			}
		}
	}
	s.updateStatus(func(st *Status) {
		st.Adopted = s.table.inMap[0] + s.table.inMap[1]
		st.Unresolved = s.table.unresolved()
	})
}

// round scans for the flows at risk and tells the peers what changed.
func (s *Syncer) round(ctx context.Context) {
	now := s.o.Now()
	s.apply(s.table.expire(now))
	s.mu.Lock()
	rings := s.rings
	s.mu.Unlock()
	if !s.enabled {
		s.nextRound = now.Add(s.o.Interval)
		return
	}
	atRisk := map[dataplane.Flow]dataplane.SharedFlow{}
	st, err := s.o.DataPath.AtRisk(func(f dataplane.SharedFlow) { atRisk[f.Flow] = f })
	s.nextRound = now.Add(max(s.o.Interval, scanShare*st.Duration))
	if err != nil {
		s.log.Warn("scan flow tables", "err", err)
		return
	}
	s.m.scanned.Add(float64(st.Scanned))
	s.m.scanTime.Observe(st.Duration.Seconds())

	var delta, withdraw []dataplane.SharedFlow
	for f, sf := range atRisk {
		if old, ok := s.announced[f]; !ok || old != sf {
			delta = append(delta, sf)
		}
	}
	for f, sf := range s.announced {
		if _, ok := atRisk[f]; !ok {
			withdraw = append(withdraw, sf)
		}
	}
	refresh := now.Sub(s.refreshed) >= s.o.Refresh
	whole := slices.Collect(maps.Values(atRisk))
	peers := s.o.Transport.Peers()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := map[string]bool{}
	for _, peer := range peers {
		share := delta
		if refresh || !s.synced[peer] {
			share = whole
		}
		if len(share) == 0 && len(withdraw) == 0 {
			ok[peer] = true // nothing it lacks
			continue
		}
		msgs, err := Encode(Update{Node: s.o.Node, Share: share, Withdraw: withdraw})
		if err != nil {
			s.log.Error("encode flow sync", "err", err)
			return
		}
		wg.Go(func() {
			sent := true
			for _, m := range msgs {
				if ctx.Err() != nil {
					sent = false
					break
				}
				if err := s.o.Transport.Send(peer, m); err != nil {
					s.m.sendErrors.Inc()
					s.log.Debug("send flow sync", "peer", peer, "err", err)
					sent = false
					break
				}
				s.sent.Add(uint64(len(m)))
			}
			mu.Lock()
			ok[peer] = sent
			mu.Unlock()
		})
	}
	wg.Wait()
	s.announced = atRisk
	s.synced = map[string]bool{}
	for peer, good := range ok {
		if good {
			s.synced[peer] = true
		}
	}
	if refresh {
		s.refreshed = now
	}
	s.updateStatus(func(x *Status) {
		x.AtRisk, x.Shared, x.Peers = st.AtRisk, len(atRisk), len(s.synced)
		x.Scanned, x.ScanTime, x.LastRound = st.Scanned, st.Duration.Seconds(), now
		x.Rings = rings
		x.SentBytes, x.ReceivedBytes = s.sent.Load(), s.received.Load()
		x.SentRate, x.ReceivedRate = s.rate(now, x.SentBytes, x.ReceivedBytes)
	})
}

// rate is the bytes per second sent and received over the last ten seconds or so.
func (s *Syncer) rate(now time.Time, sent, received uint64) (float64, float64) {
	s.rates = append(s.rates, rateSample{now, sent, received})
	for len(s.rates) > 2 && now.Sub(s.rates[1].at) >= 10*time.Second {
		s.rates = s.rates[1:]
	}
	first := s.rates[0]
	dt := now.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0, 0
	}
	return float64(sent-first.sent) / dt, float64(received-first.received) / dt
}

func (s *Syncer) updateStatus(f func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.status)
}
