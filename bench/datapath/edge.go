package main

import (
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The edge packets' scenarios (bpf/lb_edge.h): an ICMP error about a VIP flow, which goes to
// the flow's backend, and the fragments of a segment to the VIP, which follow their first.
// Every frame fits the wrapper's 128-byte template.

// a router on the reply path
var router = netip.MustParseAddr("198.18.0.254")

func edgeScenarios(lbp *ebpf.Program) []scenario {
	frags := tcpFragments(client, vip, 40010, 0x4242)
	orphan := tcpFragments(client, vip, 40011, 0x4243)[1]
	return []scenario{
		// the hit scenario's flow is in the table by now (checkPaths sent it)
		{name: "icmp error, flow in table", key: "icmp_err_hit", lb: true, prog: lbp, frame: fragNeeded(40000), want: 3},
		{name: "icmp error, flow by ring", key: "icmp_err_ring", lb: true, prog: lbp, frame: fragNeeded(50000), want: 3},
		// the same datagram's first fragment again, as the wrapper restores it: its entry is
		// replaced (a new datagram's inserts one: ~15% more, measured one packet per call
		// with the IP id counting up)
		{name: "first fragment (same datagram)", key: "frag_first", lb: true, prog: lbp, frame: frags[0], want: 3},
		{name: "later fragment", key: "frag_later", lb: true, prog: lbp, frame: frags[1], want: 3},
		{name: "later fragment, first not seen", key: "frag_orphan", lb: true, prog: lbp, frame: orphan, want: 1},
	}
}

// what those scenarios make xdp_lb do (bpf/lb_edge.h, then balance and send)
func init() {
	send := []string{"vip_stats", "backend_stats", "stats"}
	paths = append(paths,
		Path{Key: "icmp_err_hit", Lookups: append([]string{"vip_filter", "vips", "events", "flows_v4", "backends"}, send...),
			Helpers: []string{"xdp_adjust_head"}, Reason: "tx", Event: "icmp_error"},
		Path{Key: "icmp_err_ring", Lookups: append([]string{"vip_filter", "vips", "events", "flows_v4", "flowsync_ctl", "rings", "ring (inner)", "backends"}, send...),
			Helpers: []string{"xdp_adjust_head"}, Reason: "tx", Event: "icmp_error"},
		Path{Key: "frag_first", Lookups: append([]string{"vip_filter", "events", "flows_v4", "backends", "events"}, send...),
			Updates: []string{"frags_v4"}, Helpers: []string{"xdp_adjust_head"}, Reason: "tx", Event: "fragment, lru_hit"},
		Path{Key: "frag_later", Lookups: append([]string{"vip_filter", "frags_v4", "events", "flows_v4", "backends", "events"}, send...),
			Helpers: []string{"xdp_adjust_head"}, Reason: "tx", Event: "fragment, lru_hit"},
		Path{Key: "frag_orphan", Lookups: []string{"vip_filter", "frags_v4", "vip_addrs", "stats"}, Reason: "drop_fragment_orphan"},
	)
}

// fragNeeded is a router's "fragmentation needed" (next-hop MTU 1280) to the VIP about its
// 1,500-byte reply to client:cport, quoting the reply's headers as RFC 792 asks.
func fragNeeded(cport uint16) []byte {
	q := &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP, SrcIP: vip.AsSlice(), DstIP: client.AsSlice()}
	th := &layers.TCP{SrcPort: 80, DstPort: layers.TCPPort(cport), ACK: true, Window: 512}
	_ = th.SetNetworkLayerForChecksum(q)
	quote := serialize(q, th, gopacket.Payload(make([]byte, 1460)))[:28]
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, TOS: 0xc0, Protocol: layers.IPProtocolICMPv4, SrcIP: router.AsSlice(), DstIP: vip.AsSlice()}
	return serialize(eth, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: 1280}, gopacket.Payload(quote))
}

// tcpFragments is a 60-byte TCP segment (an ACK with 40 bytes of data) from src:sport to
// dst:80 in two fragments of IP identification id: the first holds the TCP header and 12
// bytes, the later one the remaining 28.
func tcpFragments(src, dst netip.Addr, sport, id uint16) [][]byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: id, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	th := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, ACK: true, Window: 512}
	_ = th.SetNetworkLayerForChecksum(ip)
	seg := serialize(ip, th, gopacket.Payload(make([]byte, 40)))[20:]
	var out [][]byte
	for _, part := range []struct {
		off   int
		bytes []byte
		more  bool
	}{{0, seg[:32], true}, {32, seg[32:], false}} {
		f := &layers.IPv4{Version: 4, TTL: 64, Id: id, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
			FragOffset: uint16(part.off / 8)}
		if part.more {
			f.Flags = layers.IPv4MoreFragments
		}
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		out = append(out, serialize(eth, f, gopacket.Payload(part.bytes)))
	}
	return out
}
