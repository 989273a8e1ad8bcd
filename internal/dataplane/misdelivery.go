// misdelivery.go: a backend host's count of misdelivered packets (bpf/misdelivery.h): TCP
// packets other than SYN that arrived for a VIP flow this host holds no socket for.

package dataplane

import (
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// Misdelivered sums, per VIP, the packets of broken flows that reached this backend: TCP
// other than SYN, decapsulated for a VIP served here, for which the host had no socket
// (none, or only the listener). The host answers them with a reset.
func (b *BackendHost) Misdelivered() (map[VIPKey]Counter, error) {
	return readMisdelivered(b.objs.Misdelivered)
}

// ReadMisdelivered reads the misdelivery counters of backend programs pinned under pinDir
// by a running (or stopped) `lbd backend`.
func ReadMisdelivered(pinDir string) (map[VIPKey]Counter, error) {
	path := filepath.Join(pinDir, backendHostDirPinName, "misdelivered")
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return nil, fmt.Errorf("open pinned misdelivery counters %s: %w", path, err)
	}
	defer m.Close()
	return readMisdelivered(m)
}

func readMisdelivered(m *ebpf.Map) (map[VIPKey]Counter, error) {
	out := map[VIPKey]Counter{}
	var k backendhostVipKey
	var per []backendhostCounter
	it := m.Iterate()
	for it.Next(&k, &per) {
		var c Counter
		for _, p := range per {
			c.Packets += p.Packets
			c.Bytes += p.Bytes
		}
		out[vipKeyFrom(lbVipKey(k))] = c
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read misdelivery counters: %w", err)
	}
	return out, nil
}
