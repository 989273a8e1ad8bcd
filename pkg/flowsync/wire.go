package flowsync

// The wire format of flow sync's messages (docs/ARCHITECTURE.md, "Flow sync"). Binary and
// grouped, because its size is the sync's cost: a shared IPv4 flow takes 6 bytes (the
// client's address and port; the VIP and the backend are said once per group). All integers
// are big-endian. pkg/cluster puts its own type byte in front and memberlist compresses
// and encrypts the whole.
//
//	message  = version:u8 (1)  node-len:u8  node  section*
//	section  = kind:u8  proto:u8  vip-family:u8  vip-addr  vip-port:u16
//	           [backend-family:u8  backend-addr]   (kind 1, share, only)
//	           count:uvarint (>= 1)  entry × count
//	entry    = client-addr  client-port:u16  [dst-port:u16]   (dst-port when vip-port is 0)
//
// kind 1 (share): these flows of the VIP are held by that backend; kind 2 (withdraw): the
// sender no longer shares them. A family is 4 or 6 and its address 4 or 16 bytes; the
// clients' family is the VIP's, the backend's may differ (4in6). A flow's destination is
// its VIP's address.

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/lbdproj/lbd/internal/dataplane"
)

const (
	wireVersion = 1

	kindShare    = 1
	kindWithdraw = 2

	// MaxMessageSize bounds one encoded message; an update that needs more is split. It
	// keeps a receiver's work per message (decode, one batch into the maps) small.
	MaxMessageSize = 64 << 10
)

// ErrBadMessage wraps every decoding error.
var ErrBadMessage = errors.New("bad flow sync message")

// Update is what one node tells the others in one round.
type Update struct {
	Node     string                 // the sender
	Share    []dataplane.SharedFlow // flows at risk on the sender, with the backend that holds each
	Withdraw []dataplane.SharedFlow // flows it shared before and no longer does (Backend unused)
}

// group is one section: the flows of one kind, VIP and backend.
type group struct {
	kind    uint8
	vip     dataplane.VIPKey
	backend netip.Addr // share only
	flows   []dataplane.Flow
}

func groups(kind uint8, flows []dataplane.SharedFlow) []group {
	type gk struct {
		vip     dataplane.VIPKey
		backend netip.Addr
	}
	by := map[gk][]dataplane.Flow{}
	for _, f := range flows {
		k := gk{vip: f.VIP}
		if kind == kindShare {
			k.backend = f.Backend
		}
		by[k] = append(by[k], f.Flow)
	}
	out := make([]group, 0, len(by))
	for k, fs := range by {
		out = append(out, group{kind: kind, vip: k.vip, backend: k.backend, flows: fs})
	}
	// a stable order: the same update always encodes to the same bytes
	slices.SortFunc(out, func(a, b group) int {
		return cmp.Or(a.vip.Addr.Compare(b.vip.Addr), cmp.Compare(a.vip.Port, b.vip.Port),
			cmp.Compare(a.vip.Proto, b.vip.Proto), a.backend.Compare(b.backend))
	})
	for _, g := range out {
		slices.SortFunc(g.flows, func(a, b dataplane.Flow) int {
			return cmp.Or(a.Src.Compare(b.Src), cmp.Compare(a.SrcPort, b.SrcPort), cmp.Compare(a.DstPort, b.DstPort))
		})
	}
	return out
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}

// Encode encodes u into messages of at most MaxMessageSize bytes each (none when u shares
// and withdraws nothing). Flows that cannot be sent (a flow whose destination is not its
// VIP's address, a protocol other than TCP or UDP, addresses of mixed families) are an
// error: the scan never produces them.
func Encode(u Update) ([][]byte, error) {
	if u.Node == "" || len(u.Node) > 255 {
		return nil, fmt.Errorf("encode flow sync: node name of %d bytes (1 to 255)", len(u.Node))
	}
	header := append([]byte{wireVersion, byte(len(u.Node))}, u.Node...)
	var msgs [][]byte
	msg := slices.Clone(header)
	flush := func() {
		if len(msg) > len(header) {
			msgs = append(msgs, msg)
		}
		msg = slices.Clone(header)
	}
	for _, g := range append(groups(kindShare, u.Share), groups(kindWithdraw, u.Withdraw)...) {
		if err := g.check(); err != nil {
			return nil, fmt.Errorf("encode flow sync: %w", err)
		}
		head := g.sectionHead()
		entry := g.entrySize()
		rest := g.flows
		for len(rest) > 0 {
			room := MaxMessageSize - len(msg) - len(head) - binary.MaxVarintLen32
			if room < entry {
				flush()
				continue
			}
			n := min(len(rest), room/entry)
			msg = append(msg, head...)
			msg = binary.AppendUvarint(msg, uint64(n))
			for _, f := range rest[:n] {
				msg = append(msg, f.Src.AsSlice()...)
				msg = binary.BigEndian.AppendUint16(msg, f.SrcPort)
				if g.vip.Port == 0 {
					msg = binary.BigEndian.AppendUint16(msg, f.DstPort)
				}
			}
			rest = rest[n:]
		}
	}
	flush()
	return msgs, nil
}

func (g group) check() error {
	v := g.vip
	if !v.Addr.IsValid() || v.Addr.Zone() != "" || v.Proto != 6 && v.Proto != 17 {
		return fmt.Errorf("vip %s: not an address with TCP or UDP", v)
	}
	if g.kind == kindShare && (!g.backend.IsValid() || g.backend.Zone() != "") {
		return fmt.Errorf("vip %s: backend %s is not an address", v, g.backend)
	}
	for _, f := range g.flows {
		if f.Dst != v.Addr || f.Proto != v.Proto || !f.Src.IsValid() || f.Src.Is4() != v.Addr.Is4() || f.Src.Zone() != "" ||
			v.Port != 0 && f.DstPort != v.Port {
			return fmt.Errorf("flow %s:%d → %s:%d/%d is not one of vip %s", f.Src, f.SrcPort, f.Dst, f.DstPort, f.Proto, v)
		}
	}
	return nil
}

func (g group) sectionHead() []byte {
	b := []byte{g.kind, g.vip.Proto, family(g.vip.Addr)}
	b = append(b, g.vip.Addr.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, g.vip.Port)
	if g.kind == kindShare {
		b = append(b, family(g.backend))
		b = append(b, g.backend.AsSlice()...)
	}
	return b
}

func (g group) entrySize() int {
	n := g.vip.Addr.BitLen()/8 + 2
	if g.vip.Port == 0 {
		n += 2
	}
	return n
}

// reader reads a message with bounds checks; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrBadMessage, fmt.Sprintf(format, args...))
	}
}

func (r *reader) bytes(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.fail("%s cut short", what)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8(what string) uint8 {
	b := r.bytes(1, what)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u16(what string) uint16 {
	b := r.bytes(2, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func (r *reader) addr(fam uint8, what string) netip.Addr {
	switch fam {
	case 4:
		if b := r.bytes(4, what); b != nil {
			return netip.AddrFrom4([4]byte(b))
		}
	case 6:
		if b := r.bytes(16, what); b != nil {
			return netip.AddrFrom16([16]byte(b))
		}
	default:
		r.fail("%s: family %d", what, fam)
	}
	return netip.Addr{}
}

// Decode decodes one message. It checks every length and field and returns ErrBadMessage
// (wrapped) for anything Encode would not have written.
func Decode(b []byte) (Update, error) {
	r := &reader{b: b}
	var u Update
	if v := r.u8("version"); r.err == nil && v != wireVersion {
		return u, fmt.Errorf("%w: version %d, this lbd reads %d", ErrBadMessage, v, wireVersion)
	}
	n := r.u8("node name length")
	u.Node = string(r.bytes(int(n), "node name"))
	if r.err == nil && u.Node == "" {
		r.fail("no node name")
	}
	for r.err == nil && len(r.b) > 0 {
		kind := r.u8("section kind")
		if r.err == nil && kind != kindShare && kind != kindWithdraw {
			r.fail("section kind %d", kind)
		}
		proto := r.u8("protocol")
		if r.err == nil && proto != 6 && proto != 17 {
			r.fail("protocol %d", proto)
		}
		vipFam := r.u8("vip family")
		vip := dataplane.VIPKey{Addr: r.addr(vipFam, "vip address"), Proto: proto}
		vip.Port = r.u16("vip port")
		var backend netip.Addr
		if kind == kindShare {
			backend = r.addr(r.u8("backend family"), "backend address")
		}
		count, k := binary.Uvarint(r.b)
		if r.err == nil && (k <= 0 || count == 0) {
			r.fail("section count")
		}
		if r.err != nil {
			break
		}
		r.b = r.b[k:]
		g := group{kind: kind, vip: vip}
		if count > uint64(len(r.b)/g.entrySize()) {
			r.fail("%d entries in %d bytes", count, len(r.b))
			break
		}
		for range count {
			f := dataplane.Flow{Src: r.addr(vipFam, "client address"), Dst: vip.Addr, Proto: proto, DstPort: vip.Port}
			f.SrcPort = r.u16("client port")
			if vip.Port == 0 {
				f.DstPort = r.u16("destination port")
			}
			sf := dataplane.SharedFlow{Flow: f, VIP: vip, Backend: backend}
			if kind == kindShare {
				u.Share = append(u.Share, sf)
			} else {
				u.Withdraw = append(u.Withdraw, sf)
			}
		}
	}
	if r.err != nil {
		return Update{}, r.err
	}
	return u, nil
}
