package config

// The cluster section: gossip between LB nodes.

import (
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/lbdproj/lbd/pkg/cluster"
	"gopkg.in/yaml.v3"
)

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

func (d *decoder) cluster(f *fields) *Cluster {
	c := &Cluster{Bind: netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultClusterPort), Quorum: DefaultQuorum,
		FlowSync: DefaultFlowSync}
	if f == nil {
		return c
	}
	if n, s, ok := f.scalar("bind"); ok {
		if ap, msg := parseBind(s); msg != "" {
			d.errorf(n, "cluster.bind", "%q %s", s, msg)
		} else {
			c.Bind = ap
		}
	}
	port := c.Bind.Port()
	if items, ok := f.list("join"); ok {
		for i, it := range items {
			it = resolve(it)
			path := index("cluster.join", i)
			if it.Kind != yaml.ScalarNode {
				d.errorf(it, path, "expected host or host:port, got %s", kindName(it))
				continue
			}
			hp, msg := parseJoin(it.Value, port)
			if msg != "" {
				d.errorf(it, path, "%q %s", it.Value, msg)
				continue
			}
			c.Join = append(c.Join, hp)
		}
	}
	if n, s, ok := f.scalar("secret_file"); ok {
		if s == "" {
			d.errorf(n, "cluster.secret_file", "is empty")
		}
		c.SecretFile = s
	} else {
		d.warnf(f.node, "cluster", "no secret_file: gossip between LB nodes is neither encrypted nor authenticated")
	}
	oneOf(f, "quorum", &c.Quorum, cluster.Quorums()...)
	f.bool("flow_sync", &c.FlowSync)
	return c
}

// parseBind accepts IP, IP:port or :port; memberlist binds to an address, not a name.
func parseBind(s string) (netip.AddrPort, string) {
	if a, err := netip.ParseAddr(s); err == nil {
		s = netip.AddrPortFrom(a, DefaultClusterPort).String()
	} else if strings.HasPrefix(s, ":") {
		s = "0.0.0.0" + s
	}
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil || ap.Addr().Zone() != "":
		return ap, "is not an IP address, IP:port or :port"
	case ap.Port() == 0:
		return ap, "needs a port other than 0: the other nodes must know where to join"
	}
	return ap, ""
}

// parseJoin accepts host or host:port, with host an IP address or a DNS name, and adds the
// default port.
func parseJoin(s string, port uint16) (string, string) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "", "is not host or host:port: an IPv6 zone is not allowed"
		}
		return netip.AddrPortFrom(a, port).String(), ""
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		host, p = s, strconv.Itoa(int(port))
	}
	if v, err := strconv.ParseUint(p, 10, 16); err != nil || v == 0 {
		return "", "has no valid port (1..65535)"
	}
	if _, err := netip.ParseAddr(host); err != nil && !hostnameRE.MatchString(host) {
		return "", "is not host or host:port"
	}
	return net.JoinHostPort(host, p), ""
}
