package config

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
)

// Digest returns a hex SHA-256 of what must be equal on every LB node for them to send a flow
// to the same backend: the hash seed and the VIPs (sorted by name, backends sorted by address,
// defaults filled in). Node-local settings (interface, pin_dir, sources, api_addr, name) and
// the cluster section do not enter it, nor do positions or the order of the file.
func (c *Config) Digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "lbd-config-digest v1\nhash_seed %d\n", c.Node.HashSeed)
	vips := slices.Clone(c.VIPs)
	slices.SortFunc(vips, func(a, b VIP) int { return cmp.Compare(a.Name, b.Name) })
	for _, v := range vips {
		fmt.Fprintf(h, "vip %q %s %d %d ring %d %q encap %q\n",
			v.Name, v.Address, v.Port, v.Proto, v.RingSize, v.Algorithm, v.Encap)
		bs := slices.Clone(v.Backends)
		slices.SortFunc(bs, func(a, b Backend) int { return a.Address.Compare(b.Address) })
		if v.QUIC { // only when set: configs without QUIC keep the digests they had
			fmt.Fprintf(h, "quic\n")
		}
		for _, b := range bs {
			fmt.Fprintf(h, "backend %s %d\n", b.Address, b.Weight)
			if b.QUICServerID != 0 {
				fmt.Fprintf(h, "quic_server_id %d\n", b.QUICServerID)
			}
		}
		x := v.Health
		fmt.Fprintf(h, "health %q %d %q %q %q %d %q %q %q %d %d %d %d %t\n",
			x.Type, x.Port, x.Path, x.Host, x.Method, x.ExpectStatus, x.ExpectBody, x.Payload,
			x.ExpectReply, x.Interval, x.Timeout, x.Rise, x.Fall, x.ThroughTunnel)
	}
	return hex.EncodeToString(h.Sum(nil))
}
