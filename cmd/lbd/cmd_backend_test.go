package main

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/lbdproj/lbd/internal/dataplane"
)

// --stats prints the return and misdelivery counters keyed by VIP ("addr:port/proto"): the stats struct
// itself, keyed by dataplane.VIPKey, cannot be encoded as JSON (staticcheck SA1026).
func TestBackendHostStatsJSON(t *testing.T) {
	st := dataplane.BackendHostStats{
		Counters: map[string]dataplane.Counter{"decap": {Packets: 3, Bytes: 300}},
		Return: map[dataplane.VIPKey]dataplane.Counter{
			{Addr: netip.MustParseAddr("198.18.0.10"), Port: 80, Proto: 6}:   {Packets: 2, Bytes: 200},
			{Addr: netip.MustParseAddr("2001:db8::53"), Port: 53, Proto: 17}: {Packets: 1, Bytes: 100},
		},
	}
	mis := map[dataplane.VIPKey]dataplane.Counter{{Addr: netip.MustParseAddr("198.18.0.10"), Port: 80, Proto: 6}: {Packets: 4, Bytes: 240}}
	b, err := json.Marshal(backendStatsJSON(st, mis))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Counters":{"decap":{"packets":3,"bytes":300}},"Return":{"198.18.0.10:80/tcp":{"packets":2,"bytes":200},"[2001:db8::53]:53/udp":{"packets":1,"bytes":100}},"Misdelivered":{"198.18.0.10:80/tcp":{"packets":4,"bytes":240}}}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}
