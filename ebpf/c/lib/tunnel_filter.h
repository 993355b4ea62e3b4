/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * tunnel_filter.h - what members may reach on this node through the
 * WireGuard tunnel besides VXLAN: the host ports the operator opened (the
 * control port on a controller included), ICMP errors and echo, and the
 * segments of TCP connections this node opened itself. Nothing is routed
 * through the node.
 */
#ifndef VLNET_TUNNEL_FILTER_H
#define VLNET_TUNNEL_FILTER_H

#include "drop.h"

/* The first bytes of a TCP header: ports and the flags byte. */
#define TCP_FLAGS_OFFSET 13
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

/* Whether @port_be of @proto is open to members (vlnet_open_ports). */
static __always_inline int port_open(__u8 proto, __u16 port_be)
{
	struct vlnet_port_key key = { .proto = proto, .port_be = port_be };

	return bpf_map_lookup_elem(&vlnet_open_ports, &key) != NULL;
}

/**
 * tunnel_filter() - judge a packet from the tunnel that is not VXLAN for us.
 * @data, @data_end: the bare IPv4 packet (an L3 tunnel has no MAC header).
 * @local_be: our address on the tunnel.
 *
 * Non-IPv4 and packets for another address are dropped; later fragments
 * pass (they carry no port; the kernel drops them unless their first
 * fragment was let in); ICMP echo request and reply, destination
 * unreachable and time exceeded pass, other ICMP is dropped; TCP to an open
 * port passes, a SYN without ACK to any other port is dropped and other
 * segments pass (they belong to connections this node opened, such as a
 * member's control session; a stray one only earns a RST); UDP passes only
 * to an open port; every other protocol is dropped.
 *
 * Return: 0 to pass the packet to the kernel, or VLNET_DROP_TUNNEL_FILTERED.
 */
static __always_inline int tunnel_filter(void *data, void *data_end, __u32 local_be)
{
	struct iphdr *ip = data;
	__u8 *l4;
	__u32 ihl;

	if ((void *)(ip + 1) > data_end || ip->version != 4)
		return VLNET_DROP_TUNNEL_FILTERED;
	if (!local_be || ip->daddr != local_be)
		return VLNET_DROP_TUNNEL_FILTERED;
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return 0;
	ihl = ip->ihl;
	if (ihl < 5)
		return VLNET_DROP_TUNNEL_FILTERED;
	l4 = (void *)ip + ihl * 4;

	if (ip->protocol == IPPROTO_ICMP) {
		if ((void *)(l4 + 1) > data_end)
			return VLNET_DROP_TUNNEL_FILTERED;
		if (l4[0] == ICMP_ECHO || l4[0] == ICMP_ECHOREPLY ||
		    l4[0] == ICMP_DEST_UNREACH || l4[0] == ICMP_TIME_EXCEEDED)
			return 0;
		return VLNET_DROP_TUNNEL_FILTERED;
	}
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)l4;

		if ((void *)(l4 + TCP_FLAGS_OFFSET + 1) > data_end)
			return VLNET_DROP_TUNNEL_FILTERED;
		if (port_open(IPPROTO_TCP, tcp->dest))
			return 0;
		if ((l4[TCP_FLAGS_OFFSET] & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
			return VLNET_DROP_TUNNEL_FILTERED;
		return 0;
	}
	if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = (void *)l4;

		if ((void *)(udp + 1) > data_end)
			return VLNET_DROP_TUNNEL_FILTERED;
		return port_open(IPPROTO_UDP, udp->dest) ? 0 : VLNET_DROP_TUNNEL_FILTERED;
	}
	return VLNET_DROP_TUNNEL_FILTERED;
}

#endif
