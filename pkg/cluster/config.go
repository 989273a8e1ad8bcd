package cluster

import (
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipLabel is put on every packet and stream (authenticated, not secret,
// when encryption is on), so another memberlist cluster on the same network
// (Consul, Serf, …) is never merged with this one.
const gossipLabel = "lbd"

// memberlistConfig is memberlist's LAN profile tuned for LB nodes on one
// LAN, where a dead node should stop voting within a few seconds.
//
// Failure detection, for clusters of up to 10 nodes:
//   - every node probes one member per ProbeInterval (500ms), round robin, so a
//     given member is probed about once per interval by someone;
//   - a probe that gets no ack within ProbeTimeout (250ms), nor through the
//     indirect probes before the interval ends, makes the member suspect;
//   - a suspect is declared dead after SuspicionMult × ProbeInterval = 2s when
//     too few nodes can confirm (3 nodes or fewer); with more nodes the timer
//     starts at SuspicionMaxTimeoutMult × 2s = 6s and shrinks toward 2s as
//     other nodes confirm the suspicion.
//
// So a node that dies without leaving stops voting about 2.5 to 3.5s later on
// a 3-node cluster (measured by TestNodeGone). A node that leaves
// stops voting as soon as its leave message arrives (one gossip round,
// GossipInterval 100ms).
//
// Node states spread by gossip every GossipInterval to GossipNodes members,
// and a full push-pull sync every PushPullInterval heals anything lost.
func memberlistConfig(opts Options, logger *slog.Logger) *memberlist.Config {
	cfg := memberlist.DefaultLANConfig()
	cfg.Name = opts.NodeName
	if a := opts.Bind.Addr(); a.IsValid() {
		cfg.BindAddr = a.String()
	}
	cfg.BindPort = int(opts.Bind.Port())
	if opts.AdvertiseAddr.IsValid() {
		cfg.AdvertiseAddr = opts.AdvertiseAddr.String()
	}
	cfg.AdvertisePort = cfg.BindPort
	cfg.Label = gossipLabel

	cfg.ProbeInterval = 500 * time.Millisecond
	cfg.ProbeTimeout = 250 * time.Millisecond
	cfg.SuspicionMult = 4
	cfg.SuspicionMaxTimeoutMult = 3
	cfg.GossipInterval = 100 * time.Millisecond
	cfg.GossipNodes = 3
	cfg.GossipToTheDeadTime = 10 * time.Second
	cfg.PushPullInterval = 10 * time.Second
	cfg.TCPTimeout = 2 * time.Second
	// a node that restarts under the same name at another address is let
	// back in after this long
	cfg.DeadNodeReclaimTime = 10 * time.Second

	cfg.SecretKey = opts.SecretKey
	cfg.Logger = memberlistLogger(logger)
	return cfg
}
