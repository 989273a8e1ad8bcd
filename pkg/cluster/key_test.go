package cluster

import (
	"cmp"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// Keys travel as "vip/address" strings, the form nodes have always gossiped, so a node
// of this version and one of the last agree on every key.
func TestBackendKeyWireForm(t *testing.T) {
	v4 := BackendKey{VIP: "web", Backend: netip.MustParseAddr("198.18.0.11")}
	v6 := BackendKey{VIP: "dns6", Backend: netip.MustParseAddr("2001:db8::1:11")}
	msg, err := encodeMessage(msgNodeState, toWire("a", NodeView{Backends: map[BackendKey]bool{v4: true, v6: false}}))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"up":["web/198.18.0.11"]`, `"down":["dns6/2001:db8::1:11"]`} {
		if !strings.Contains(string(msg), want) {
			t.Errorf("message %s lacks %s", msg, want)
		}
	}
	_, states, err := decodeMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got := states[0].view().Backends; len(got) != 2 || !got[v4] || got[v6] {
		t.Errorf("decoded %v", got)
	}

	for _, bad := range []string{"web", "web/198.18.0.300", "web/198.18.0.11:80", ""} {
		var k BackendKey
		if err := k.UnmarshalText([]byte(bad)); !errors.Is(err, errBadMessage) {
			t.Errorf("UnmarshalText(%q) = %v, want errBadMessage", bad, err)
		}
		msg := append([]byte{byte(msgNodeState)}, `{"node":"a","version":1,"digest":"d","up":["`+bad+`"]}`...)
		if _, _, err := decodeMessage(msg); !errors.Is(err, errBadMessage) {
			t.Errorf("a state with key %q: %v, want errBadMessage", bad, err)
		}
	}
	if _, err := (BackendKey{VIP: "web"}).MarshalText(); err == nil {
		t.Error("a key without an address was encoded")
	}
}

func TestBackendKeyOrder(t *testing.T) {
	keys := []BackendKey{key("a/198.18.0.9"), key("a/198.18.0.10"), key("b/198.18.0.1")}
	for i := range keys {
		for j := range keys {
			if got, want := keys[i].Compare(keys[j]), cmp.Compare(i, j); got != want {
				t.Errorf("%s.Compare(%s) = %d, want %d", keys[i], keys[j], got, want)
			}
		}
	}
}
