package flowsync

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/lbdproj/lbd/internal/dataplane"
)

var (
	web   = dataplane.VIPKey{Addr: netip.MustParseAddr("198.18.0.10"), Port: 80, Proto: 6}
	dns   = dataplane.VIPKey{Addr: netip.MustParseAddr("198.18.0.10"), Port: 53, Proto: 17}
	any4  = dataplane.VIPKey{Addr: netip.MustParseAddr("198.18.0.20"), Port: 0, Proto: 6}
	web6  = dataplane.VIPKey{Addr: netip.MustParseAddr("2001:db8::10"), Port: 443, Proto: 6}
	be1   = netip.MustParseAddr("198.18.0.11")
	be2   = netip.MustParseAddr("198.18.0.12")
	be6   = netip.MustParseAddr("2001:db8::11")
	addrs = gocmp.Comparer(func(a, b netip.Addr) bool { return a == b })
)

// flowOf is a flow of vip from client address c (the IPv4 or IPv6 form of n) and port p.
func flowOf(vip dataplane.VIPKey, n uint32, p uint16) dataplane.Flow {
	src := netip.AddrFrom4([4]byte{198, 19, byte(n >> 8), byte(n)})
	if vip.Addr.Is6() {
		src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(n >> 8), byte(n)})
	}
	dport := vip.Port
	if dport == 0 {
		dport = 1000 + p
	}
	return dataplane.Flow{Src: src, Dst: vip.Addr, SrcPort: p, DstPort: dport, Proto: vip.Proto}
}

func shared(vip dataplane.VIPKey, be netip.Addr, n uint32, p uint16) dataplane.SharedFlow {
	return dataplane.SharedFlow{Flow: flowOf(vip, n, p), VIP: vip, Backend: be}
}

func sortedUpdate(u Update) Update {
	less := func(a, b dataplane.SharedFlow) int {
		return cmp.Or(a.VIP.Addr.Compare(b.VIP.Addr), cmp.Compare(a.VIP.Port, b.VIP.Port), cmp.Compare(a.VIP.Proto, b.VIP.Proto),
			a.Flow.Src.Compare(b.Flow.Src), cmp.Compare(a.Flow.SrcPort, b.Flow.SrcPort), cmp.Compare(a.Flow.DstPort, b.Flow.DstPort),
			a.Backend.Compare(b.Backend))
	}
	u.Share, u.Withdraw = slices.Clone(u.Share), slices.Clone(u.Withdraw)
	slices.SortFunc(u.Share, less)
	slices.SortFunc(u.Withdraw, less)
	return u
}

// decodeAll decodes every message and merges them into one update.
func decodeAll(t testing.TB, msgs [][]byte) Update {
	t.Helper()
	var all Update
	for _, m := range msgs {
		if len(m) > MaxMessageSize {
			t.Fatalf("message of %d bytes, at most %d", len(m), MaxMessageSize)
		}
		u, err := Decode(m)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if all.Node != "" && u.Node != all.Node {
			t.Fatalf("node %q then %q", all.Node, u.Node)
		}
		all.Node = u.Node
		all.Share = append(all.Share, u.Share...)
		all.Withdraw = append(all.Withdraw, u.Withdraw...)
	}
	return all
}

func TestWireRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	u := Update{Node: "lb1"}
	for i := range 12000 { // several messages' worth
		vip := []dataplane.VIPKey{web, dns, any4, web6}[r.IntN(4)]
		be := []netip.Addr{be1, be2, be6}[r.IntN(3)]
		if vip == web6 {
			be = be6
		}
		f := shared(vip, be, uint32(i), uint16(r.Uint32()))
		if r.IntN(5) == 0 {
			f.Backend = netip.Addr{}
			u.Withdraw = append(u.Withdraw, f)
		} else {
			u.Share = append(u.Share, f)
		}
	}
	msgs, err := Encode(u)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 2 {
		t.Fatalf("%d messages: the test wants an update split over several", len(msgs))
	}
	got := decodeAll(t, msgs)
	if d := gocmp.Diff(sortedUpdate(u), sortedUpdate(got), addrs); d != "" {
		t.Fatalf("round trip (-sent +received):\n%s", d)
	}
	again, _ := Encode(u)
	if !slices.EqualFunc(msgs, again, slices.Equal) {
		t.Errorf("the same update encoded to other bytes")
	}
	if msgs, _ := Encode(Update{Node: "lb1"}); len(msgs) != 0 {
		t.Errorf("an empty update makes %d messages", len(msgs))
	}
}

// The size is what the format says: per IPv4 flow its client's address and port.
func TestWireSize(t *testing.T) {
	u := Update{Node: "lb1"}
	for i := range 1000 {
		u.Share = append(u.Share, shared(web, []netip.Addr{be1, be2}[i%2], uint32(i), uint16(40000+i)))
	}
	msgs, err := Encode(u)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	// version, name; per backend a section head (kind, proto, family, vip, port, backend
	// family and address) and a 2-byte count; 6 bytes a flow
	want := 2 + 3 + 2*(3+4+2+1+4+2) + 1000*6
	if len(msgs[0]) != want {
		t.Errorf("1000 IPv4 flows on 2 backends: %d bytes, want %d", len(msgs[0]), want)
	}
}

func TestWireRefusesWhatItCannotSay(t *testing.T) {
	bad := []dataplane.SharedFlow{
		{Flow: dataplane.Flow{Src: be1, Dst: be2, SrcPort: 1, DstPort: 80, Proto: 6}, VIP: web, Backend: be1}, // not to the VIP
		{Flow: dataplane.Flow{Src: be6, Dst: web.Addr, SrcPort: 1, DstPort: 80, Proto: 6}, VIP: web, Backend: be1},
		{Flow: dataplane.Flow{Src: be1, Dst: web.Addr, SrcPort: 1, DstPort: 81, Proto: 6}, VIP: web, Backend: be1},
		{Flow: dataplane.Flow{Src: be1, Dst: web.Addr, SrcPort: 1, DstPort: 80, Proto: 1}, VIP: dataplane.VIPKey{Addr: web.Addr, Port: 80, Proto: 1}, Backend: be1},
		{Flow: flowOf(web, 1, 1), VIP: web},
	}
	for _, f := range bad {
		if _, err := Encode(Update{Node: "lb1", Share: []dataplane.SharedFlow{f}}); err == nil {
			t.Errorf("encoded %+v", f)
		}
	}
	if _, err := Encode(Update{Share: []dataplane.SharedFlow{shared(web, be1, 1, 1)}}); err == nil {
		t.Errorf("encoded an update without a node name")
	}
}

func TestDecodeRefusesDamage(t *testing.T) {
	msgs, err := Encode(Update{Node: "lb1",
		Share:    []dataplane.SharedFlow{shared(web, be1, 1, 1), shared(any4, be6, 2, 2), shared(web6, be6, 3, 3)},
		Withdraw: []dataplane.SharedFlow{{Flow: flowOf(dns, 4, 4), VIP: dns}}})
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	// every cut inside a section header or entry is an error, never a panic; cuts that
	// fall between sections are shorter messages that decode
	for i := range len(m) {
		u, err := Decode(m[:i])
		if err != nil && !errors.Is(err, ErrBadMessage) {
			t.Fatalf("cut at %d: %v is not ErrBadMessage", i, err)
		}
		if err == nil && len(u.Share)+len(u.Withdraw) >= 4 {
			t.Fatalf("cut at %d decoded whole", i)
		}
	}
	for _, c := range []struct {
		name string
		edit func([]byte) []byte
	}{
		{"version", func(b []byte) []byte { b[0] = 2; return b }},
		{"empty name", func(b []byte) []byte { return append([]byte{1, 0}, b[5:]...) }},
		{"section kind", func(b []byte) []byte { b[5] = 9; return b }},
		{"protocol", func(b []byte) []byte { b[6] = 1; return b }},
		{"vip family", func(b []byte) []byte { b[7] = 5; return b }},
		{"trailing byte", func(b []byte) []byte { return append(b, 1) }},
		{"last entry cut short", func(b []byte) []byte { return append(b[:len(b)-6], 0x7f) }},
	} {
		if _, err := Decode(c.edit(slices.Clone(m))); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: err %v, want ErrBadMessage", c.name, err)
		}
	}
}

// FuzzDecode: any input decodes to an error or to an update that encodes back to
// messages decoding to the same flows.
func FuzzDecode(f *testing.F) {
	msgs, _ := Encode(Update{Node: "lb1",
		Share:    []dataplane.SharedFlow{shared(web, be1, 1, 1), shared(any4, be6, 2, 2), shared(web6, be6, 3, 3)},
		Withdraw: []dataplane.SharedFlow{{Flow: flowOf(dns, 4, 4), VIP: dns}}})
	for _, m := range msgs {
		f.Add(m)
	}
	f.Add([]byte{1, 3, 'l', 'b', '1'})
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error %v is not ErrBadMessage", err)
			}
			return
		}
		msgs, err := Encode(u)
		if err != nil {
			t.Fatalf("decoded %+v, which does not encode: %v", u, err)
		}
		got := decodeAll(t, msgs)
		if len(u.Share)+len(u.Withdraw) == 0 {
			got.Node = u.Node
		}
		if d := gocmp.Diff(sortedUpdate(u), sortedUpdate(got), addrs); d != "" {
			t.Fatalf("re-encoded (-decoded +again):\n%s", d)
		}
	})
}
