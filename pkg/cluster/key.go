package cluster

import (
	"cmp"
	"fmt"
	"net/netip"
	"strings"
)

// BackendKey names one backend of one VIP: the VIP's name and the backend's address. Nodes
// vote on backends by this key, so it is the same on every node for the same config.
type BackendKey struct {
	VIP     string
	Backend netip.Addr
}

// String is "vip/address", the key's form in logs and on the wire.
func (k BackendKey) String() string { return k.VIP + "/" + k.Backend.String() }

// Compare orders keys by VIP name, then by address.
func (k BackendKey) Compare(o BackendKey) int {
	if c := cmp.Compare(k.VIP, o.VIP); c != 0 {
		return c
	}
	return k.Backend.Compare(o.Backend)
}

// MarshalText encodes the key as "vip/address", the form nodes gossip.
func (k BackendKey) MarshalText() ([]byte, error) {
	if !k.Backend.IsValid() {
		return nil, fmt.Errorf("%w: backend key %q has no address", errBadMessage, k.VIP)
	}
	return []byte(k.String()), nil
}

// UnmarshalText decodes "vip/address"; the address follows the last '/'.
func (k *BackendKey) UnmarshalText(b []byte) error {
	s := string(b)
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return fmt.Errorf("%w: backend key %q is not vip/address", errBadMessage, s)
	}
	a, err := netip.ParseAddr(s[i+1:])
	if err != nil {
		return fmt.Errorf("%w: backend key %q: %v", errBadMessage, s, err)
	}
	*k = BackendKey{VIP: s[:i], Backend: a}
	return nil
}
