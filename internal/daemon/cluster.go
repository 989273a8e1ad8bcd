package daemon

// Joining the other LB nodes.

import (
	"github.com/lbdproj/lbd/pkg/cluster"
	"github.com/lbdproj/lbd/pkg/config"
)

// newCluster starts gossip for cfg.Cluster; nil when the node decides alone.
func newCluster(cfg *config.Config, d *Daemon) (*cluster.Cluster, error) {
	cc := cfg.Cluster
	if cc == nil {
		return nil, nil
	}
	opts := cluster.Options{NodeName: cfg.Node.Name, Bind: cc.Bind, Join: cc.Join,
		Quorum: cc.Quorum, ConfigDigest: cfg.Digest(), Registerer: d.reg, Logger: d.log.With("component", "cluster"),
		OnChange: d.kick, OnFlows: d.receiveFlows}
	if cc.SecretFile == "" {
		opts.Insecure = true
		d.log.Warn("cluster gossip is neither encrypted nor authenticated: set cluster.secret_file")
	} else {
		key, err := cluster.LoadSecret(cc.SecretFile)
		if err != nil {
			return nil, err
		}
		opts.SecretKey = key
	}
	return cluster.New(opts)
}
