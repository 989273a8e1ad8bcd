package quiccid

import "testing"

func TestGeneratorLayout(t *testing.T) {
	g := Generator{ServerID: 0xbeef}
	seen := map[string]bool{}
	for range 1000 {
		id, err := g.GenerateConnectionID()
		if err != nil {
			t.Fatal(err)
		}
		b := id.Bytes()
		if len(b) != Len || id.Len() != g.ConnectionIDLen() {
			t.Fatalf("id of %d bytes", len(b))
		}
		if sid, ok := ServerID(b); !ok || sid != 0xbeef {
			t.Fatalf("id %x carries server %#x (%v)", b, sid, ok)
		}
		if seen[string(b)] {
			t.Fatalf("id %x issued twice", b)
		}
		seen[string(b)] = true
	}
	if _, err := (Generator{}).GenerateConnectionID(); err == nil {
		t.Error("server id 0 made an id")
	}
	for _, id := range [][]byte{{0x80, 0, 1, 0, 0, 0, 0, 0}, {0x40, 0, 0, 0, 0, 0, 0, 0}, {0x40, 0, 1}} {
		if _, ok := ServerID(id); ok {
			t.Errorf("%x read as lbd's layout", id)
		}
	}
}
