package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// Wire format of the delegate's messages: one type byte, then JSON. JSON
// keeps the format readable in a packet capture and needs nothing outside the
// standard library; memberlist compresses and encrypts it on the wire.

// messageType is the first byte of every message this package sends.
type messageType uint8

const (
	// msgNodeState carries one node's state, as a broadcast (UDP gossip) or,
	// when too large for a packet, sent over TCP to each member.
	msgNodeState messageType = 1
	// msgPushPull carries every node state this node knows, in memberlist's
	// periodic TCP push-pull and on join.
	msgPushPull messageType = 2
	// msgFlows carries a flow sync message (pkg/flowsync's own binary format), sent
	// to each member over a stream (flows.go).
	msgFlows messageType = 3
)

// metaVersion is the first byte of the node meta; the config digest follows.
const metaVersion = 1

// maxDigestLen bounds the config digest so the node meta stays well within
// memberlist.MetaMaxSize (512 bytes).
const maxDigestLen = 128

var errBadMessage = errors.New("bad cluster message")

// wireState is one node's state on the wire. Backends are split into two
// sorted lists of "vip/address" strings (BackendKey.MarshalText), which is
// smaller than a JSON object of booleans and makes the encoding of a given
// state deterministic.
type wireState struct {
	Node         string       `json:"node"`
	Version      uint64       `json:"version"`
	ConfigDigest string       `json:"digest"`
	Fingerprint  string       `json:"fingerprint,omitempty"`
	Up           []BackendKey `json:"up,omitempty"`
	Down         []BackendKey `json:"down,omitempty"`
	Leaving      bool         `json:"leaving,omitempty"`
}

type wirePushPull struct {
	States []wireState `json:"states"`
}

func toWire(node string, v NodeView) wireState {
	ws := wireState{
		Node:         node,
		Version:      v.Version,
		ConfigDigest: v.ConfigDigest,
		Fingerprint:  v.Fingerprint,
		Leaving:      v.Leaving,
	}
	for key, up := range v.Backends {
		if up {
			ws.Up = append(ws.Up, key)
		} else {
			ws.Down = append(ws.Down, key)
		}
	}
	slices.SortFunc(ws.Up, BackendKey.Compare)
	slices.SortFunc(ws.Down, BackendKey.Compare)
	return ws
}

func (ws wireState) view() NodeView {
	backends := make(map[BackendKey]bool, len(ws.Up)+len(ws.Down))
	for _, key := range ws.Down {
		backends[key] = false
	}
	// a key listed twice counts as up; a well-behaved sender never does it
	for _, key := range ws.Up {
		backends[key] = true
	}
	return NodeView{
		ConfigDigest: ws.ConfigDigest,
		Version:      ws.Version,
		Fingerprint:  ws.Fingerprint,
		Backends:     backends,
		Leaving:      ws.Leaving,
	}
}

func encodeMessage(t messageType, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode cluster message %d: %w", t, err)
	}
	return append([]byte{byte(t)}, b...), nil
}

// decodeMessage returns the message type and its decoded body: a wireState or
// a wirePushPull.
func decodeMessage(b []byte) (messageType, []wireState, error) {
	if len(b) < 1 {
		return 0, nil, fmt.Errorf("%w: empty", errBadMessage)
	}
	switch t := messageType(b[0]); t {
	case msgNodeState:
		var ws wireState
		if err := json.Unmarshal(b[1:], &ws); err != nil {
			return t, nil, fmt.Errorf("%w: node state: %v", errBadMessage, err)
		}
		if ws.Node == "" {
			return t, nil, fmt.Errorf("%w: node state without node name", errBadMessage)
		}
		return t, []wireState{ws}, nil
	case msgPushPull:
		var pp wirePushPull
		if err := json.Unmarshal(b[1:], &pp); err != nil {
			return t, nil, fmt.Errorf("%w: push-pull: %v", errBadMessage, err)
		}
		states := pp.States[:0]
		for _, ws := range pp.States {
			if ws.Node != "" {
				states = append(states, ws)
			}
		}
		return t, states, nil
	default:
		return t, nil, fmt.Errorf("%w: unknown type %d", errBadMessage, t)
	}
}

func encodeMeta(digest string) []byte {
	return append([]byte{metaVersion}, digest...)
}

// decodeMeta returns the config digest in a node's meta; ok is false when the
// meta is missing or of an unknown version.
func decodeMeta(meta []byte) (digest string, ok bool) {
	if len(meta) < 1 || meta[0] != metaVersion {
		return "", false
	}
	return string(meta[1:]), true
}
