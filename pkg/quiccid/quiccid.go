// Package quiccid makes QUIC connection ids that lbd can route by: a QUIC server behind a
// VIP with `quic: true` issues its connection ids from a Generator carrying its
// quic_server_id, and lbd sends every short-header packet of its connections to it, whatever
// address and port the client sends from (NAT rebinding, connection migration).
//
// The layout (lbd's layout 1), 8 bytes: byte 0 has its top two bits 01 and six random ones;
// bytes 1-2 are the server id in network order; bytes 3-7 are random. The randomness keeps
// an observer from linking two ids of one connection beyond the server they share, which
// the load balancer must see anyway (RFC 9000 5.1; QUIC-LB drafts make the same trade).
//
// With github.com/quic-go/quic-go:
//
//	tr := &quic.Transport{Conn: udpConn, ConnectionIDGenerator: quiccid.Generator{ServerID: 7}}
package quiccid

import (
	"crypto/rand"
	"errors"

	"github.com/quic-go/quic-go"
)

// Len is the length of the connection ids a Generator issues.
const Len = 8

const (
	layoutMask = 0xc0
	layout1    = 0x40
)

// Generator issues connection ids that carry ServerID (1-65535, the backend's
// quic_server_id in lbd's config). It implements quic.ConnectionIDGenerator.
type Generator struct {
	ServerID uint16
}

var _ quic.ConnectionIDGenerator = Generator{}

// GenerateConnectionID is a new id carrying g.ServerID.
func (g Generator) GenerateConnectionID() (quic.ConnectionID, error) {
	if g.ServerID == 0 {
		return quic.ConnectionID{}, errors.New("quiccid: server id 0 names no server")
	}
	var b [Len]byte
	if _, err := rand.Read(b[:]); err != nil {
		return quic.ConnectionID{}, err
	}
	b[0] = layout1 | b[0]&^layoutMask
	b[1], b[2] = byte(g.ServerID>>8), byte(g.ServerID)
	return quic.ConnectionIDFromBytes(b[:]), nil
}

// ConnectionIDLen is Len.
func (Generator) ConnectionIDLen() int { return Len }

// ServerID reads the server id from a connection id in lbd's layout; ok is false for ids in
// another layout, which lbd routes by the ring.
func ServerID(id []byte) (sid uint16, ok bool) {
	if len(id) < Len || id[0]&layoutMask != layout1 {
		return 0, false
	}
	sid = uint16(id[1])<<8 | uint16(id[2])
	return sid, sid != 0
}
