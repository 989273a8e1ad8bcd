package announce

// The BGP speaker: GoBGP embedded, connecting out to each peer, announcing host routes with
// this node as the next hop.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Timers lbd sets on every session, beside the configured hold time.
const (
	// connectRetry: how often lbd retries connecting to a peer that is down (GoBGP's default,
	// 120s, would leave a router that restarted without this node's routes for minutes).
	connectRetry = 5 * time.Second
	// idleHoldAfterReset: how long a session reset by BFD or a NOTIFICATION waits before
	// reconnecting (GoBGP's default is 30s).
	idleHoldAfterReset = 5 * time.Second
	// BFD: control packets every bfdInterval, the session down after bfdMultiplier are
	// missed (0.8s). GoBGP sends at its own interval whatever the peer asks for.
	bfdInterval   = 200 * time.Millisecond
	bfdMultiplier = 4
)

// communityGracefulShutdown is GRACEFUL_SHUTDOWN, 65535:0 (RFC 8326); GoBGP calls it
// planned-shut.
const communityGracefulShutdown = uint32(bgp.COMMUNITY_PLANNED_SHUT)

// Peer is a router to announce to.
type Peer struct {
	Address netip.Addr
	ASN     uint32
	BFD     bool
}

// Attrs are the attributes of every route.
type Attrs struct {
	Communities []uint32
	MED         uint32
}

// PeerStatus is one session.
type PeerStatus struct {
	Address    string    `json:"address"`
	ASN        uint32    `json:"asn"`
	State      string    `json:"state"`          // idle, connect, active, opensent, openconfirm, established
	Since      time.Time `json:"since,omitzero"` // established since
	RoutesSent uint64    `json:"routes_sent"`    // routes this node advertises on the session
	BFD        string    `json:"bfd,omitempty"`  // BFD session state when BFD is on: up, down, init
	LastError  string    `json:"last_error,omitempty"`
}

// PeerEvent is a session going up or down.
type PeerEvent struct {
	Peer   netip.Addr
	Up     bool
	Reason string // why it went down
}

// SpeakerOptions configure a speaker.
type SpeakerOptions struct {
	ASN      uint32
	RouterID netip.Addr
	HoldTime time.Duration
	Peers    []Peer
	Logger   *slog.Logger
	// OnPeer is called on each session going up or down, from one goroutine.
	OnPeer func(PeerEvent)
}

// Speaker is the embedded BGP speaker.
type Speaker struct {
	s        *server.BgpServer
	log      *slog.Logger
	holdTime time.Duration
	cancel   context.CancelFunc

	mu        sync.Mutex
	peers     []Peer
	lastError map[netip.Addr]string
	stopped   bool
}

// StartSpeaker starts GoBGP without a listener (lbd connects out: ListenPort -1) and adds
// the peers.
func StartSpeaker(opts SpeakerOptions) (*Speaker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// GoBGP logs every state change at info; lbd logs the ones that matter itself.
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelWarn)
	gobgpLog := slog.New(levelHandler{opts.Logger.Handler(), lvl}).With("component", "gobgp")
	s := server.NewBgpServer(server.LoggerOption(gobgpLog, lvl))
	go s.Serve()
	sp := &Speaker{s: s, log: opts.Logger, holdTime: opts.HoldTime, lastError: map[netip.Addr]string{}}
	if err := s.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
		Asn: opts.ASN, RouterId: opts.RouterID.String(), ListenPort: -1,
	}}); err != nil {
		s.Stop()
		return nil, fmt.Errorf("start bgp: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sp.cancel = cancel
	// GoBGP reports every FSM state; lbd cares about entering and leaving established, and
	// about why a session went down (or failed to come up).
	type state struct {
		peer   netip.Addr
		up     bool
		reason string
	}
	events := make(chan state, 64)
	err := s.WatchEvent(ctx, server.WatchEventMessageCallbacks{
		OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
			if ev.Type != apiutil.PEER_EVENT_STATE {
				return
			}
			st := ev.Peer.State
			e := state{peer: st.NeighborAddress, up: st.SessionState == bgp.BGP_FSM_ESTABLISHED}
			switch st.DisconnectReason {
			case api.PeerState_DISCONNECT_REASON_UNSPECIFIED, api.PeerState_DISCONNECT_REASON_IDLE_TIMER_EXPIRED:
				// no failure: the FSM moving on, or idle → active when connecting
			default:
				e.reason = disconnectReason(st)
			}
			select {
			case events <- e:
			case <-ctx.Done():
			}
		},
	}, server.WatchPeer())
	if err != nil {
		cancel()
		s.Stop()
		return nil, fmt.Errorf("watch bgp peers: %w", err)
	}
	go func() {
		up := map[netip.Addr]bool{}
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-events:
				if e.reason != "" {
					sp.mu.Lock()
					sp.lastError[e.peer] = e.reason
					sp.mu.Unlock()
				}
				if e.up == up[e.peer] {
					continue
				}
				up[e.peer] = e.up
				if opts.OnPeer != nil {
					opts.OnPeer(PeerEvent{Peer: e.peer, Up: e.up, Reason: e.reason})
				}
			}
		}
	}()
	if err := sp.SetPeers(opts.Peers); err != nil {
		sp.Stop()
		return nil, err
	}
	return sp, nil
}

// disconnectReason says why a session went down, in words.
func disconnectReason(st apiutil.PeerState) string {
	if st.DisconnectMessage != "" {
		return st.DisconnectMessage
	}
	return st.DisconnectReason.String()
}

// SetPeers adds the peers that are new and removes those that are gone; the sessions of
// the others are left alone. Changing a peer's settings would restart its session, so a peer
// whose asn or bfd changed is refused: remove it and add it back instead.
func (sp *Speaker) SetPeers(peers []Peer) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var errs []error
	for _, old := range sp.peers {
		i := slices.IndexFunc(peers, func(p Peer) bool { return p.Address == old.Address })
		if i >= 0 && peers[i] != old {
			return fmt.Errorf("bgp peer %s: asn or bfd changed, which needs a new session", old.Address)
		}
	}
	var kept []Peer
	for _, old := range sp.peers {
		if slices.ContainsFunc(peers, func(p Peer) bool { return p.Address == old.Address }) {
			kept = append(kept, old)
			continue
		}
		if err := sp.s.DeletePeer(context.Background(), &api.DeletePeerRequest{Address: old.Address.String()}); err != nil {
			errs = append(errs, fmt.Errorf("remove bgp peer %s: %w", old.Address, err))
			kept = append(kept, old)
			continue
		}
		delete(sp.lastError, old.Address)
		sp.log.Info("bgp peer removed", "peer", old.Address)
	}
	for _, p := range peers {
		if slices.Contains(kept, p) {
			continue
		}
		if err := sp.s.AddPeer(context.Background(), &api.AddPeerRequest{Peer: sp.apiPeer(p)}); err != nil {
			errs = append(errs, fmt.Errorf("add bgp peer %s: %w", p.Address, err))
			continue
		}
		kept = append(kept, p)
		sp.log.Info("bgp peer added", "peer", p.Address, "asn", p.ASN, "bfd", p.BFD, "hold_time", sp.holdTime)
	}
	sp.peers = kept
	return errors.Join(errs...)
}

func (sp *Speaker) apiPeer(p Peer) *api.Peer {
	ap := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:               uint64(sp.holdTime / time.Second),
			KeepaliveInterval:      uint64(sp.holdTime / 3 / time.Second),
			ConnectRetry:           uint64(connectRetry / time.Second),
			IdleHoldTimeAfterReset: uint64(idleHoldAfterReset / time.Second),
		}},
	}
	if p.BFD {
		ap.Bfd = &api.BfdPeerConfig{Enabled: true,
			DesiredMinimumTxInterval: uint32(bfdInterval / time.Microsecond),
			RequiredMinimumReceive:   uint32(bfdInterval / time.Microsecond),
			DetectionMultiplier:      bfdMultiplier}
	}
	return ap
}

// Announce adds or replaces the host route to addr with attrs; the next hop is this node's
// address on each session.
func (sp *Speaker) Announce(addr netip.Addr, attrs Attrs) error {
	p, err := path(addr, attrs, false)
	if err != nil {
		return err
	}
	if _, err := sp.s.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{p}}); err != nil {
		return fmt.Errorf("announce %s: %w", addr, err)
	}
	return nil
}

// Withdraw removes the route to addr.
func (sp *Speaker) Withdraw(addr netip.Addr) error {
	p, err := path(addr, Attrs{}, true)
	if err != nil {
		return err
	}
	if err := sp.s.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{p}}); err != nil {
		return fmt.Errorf("withdraw %s: %w", addr, err)
	}
	return nil
}

// path is the host route to addr: origin IGP, next hop unspecified so that GoBGP puts the
// session's own address there (next-hop self), over MP_REACH_NLRI for IPv6.
func path(addr netip.Addr, attrs Attrs, withdraw bool) (*apiutil.Path, error) {
	prefix := netip.PrefixFrom(addr, addr.BitLen())
	nlri, err := bgp.NewIPAddrPrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", prefix, err)
	}
	p := &apiutil.Path{Nlri: nlri, Withdrawal: withdraw,
		Attrs: []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}}
	var nh bgp.PathAttributeInterface
	if addr.Is4() {
		p.Family = bgp.RF_IPv4_UC
		nh, err = bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
	} else {
		p.Family = bgp.RF_IPv6_UC
		nh, err = bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv6_UC, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
	}
	if err != nil {
		return nil, fmt.Errorf("route %s: next hop: %w", prefix, err)
	}
	p.Attrs = append(p.Attrs, nh, bgp.NewPathAttributeMultiExitDisc(attrs.MED))
	if len(attrs.Communities) > 0 {
		p.Attrs = append(p.Attrs, bgp.NewPathAttributeCommunities(attrs.Communities))
	}
	return p, nil
}

// Peers reports every session.
func (sp *Speaker) Peers() []PeerStatus {
	var out []PeerStatus
	sp.mu.Lock()
	stopped := sp.stopped
	lastErr := make(map[string]string, len(sp.lastError))
	for a, e := range sp.lastError {
		lastErr[a.String()] = e
	}
	sp.mu.Unlock()
	if stopped {
		return nil
	}
	_ = sp.s.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		ps := PeerStatus{Address: p.GetConf().GetNeighborAddress(), ASN: p.GetConf().GetPeerAsn(),
			State: sessionState(p.GetState().GetSessionState()), LastError: lastErr[p.GetConf().GetNeighborAddress()]}
		if ps.State == "established" {
			if up := p.GetTimers().GetState().GetUptime(); up != nil {
				ps.Since = up.AsTime()
			}
			for _, af := range p.GetAfiSafis() {
				ps.RoutesSent += af.GetState().GetAdvertised()
			}
		}
		if p.GetBfd().GetEnabled() {
			ps.BFD = bfdState(p.GetState().GetBfdState().GetSessionState())
		}
		out = append(out, ps)
	})
	slices.SortFunc(out, func(a, b PeerStatus) int {
		return netip.MustParseAddr(a.Address).Compare(netip.MustParseAddr(b.Address))
	})
	return out
}

func sessionState(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_SESSION_STATE_IDLE:
		return "idle"
	case api.PeerState_SESSION_STATE_CONNECT:
		return "connect"
	case api.PeerState_SESSION_STATE_ACTIVE:
		return "active"
	case api.PeerState_SESSION_STATE_OPENSENT:
		return "opensent"
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

func bfdState(s api.BfdSessionState) string {
	switch s {
	case api.BfdSessionState_BFD_SESSION_STATE_UP:
		return "up"
	case api.BfdSessionState_BFD_SESSION_STATE_INIT:
		return "init"
	case api.BfdSessionState_BFD_SESSION_STATE_ADMIN_DOWN:
		return "admin-down"
	}
	return "down"
}

// Stop closes every session (a NOTIFICATION Cease to each peer) and stops GoBGP.
func (sp *Speaker) Stop() {
	sp.mu.Lock()
	if sp.stopped {
		sp.mu.Unlock()
		return
	}
	sp.stopped = true
	sp.mu.Unlock()
	sp.s.Stop()
	if sp.cancel != nil {
		sp.cancel()
	}
}

// levelHandler drops records below a level: GoBGP logs through it.
type levelHandler struct {
	slog.Handler
	level slog.Leveler
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() && h.Handler.Enabled(ctx, l)
}

func (h levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelHandler{h.Handler.WithAttrs(as), h.level}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{h.Handler.WithGroup(name), h.level}
}
