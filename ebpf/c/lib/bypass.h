/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * bypass.h - the bridge bypass (see vlnet_abi.h, "Bridge bypass"): which
 * frames may skip the VNI's bridge and overlay port, and how they reach a
 * VM's port. Only known unicast IP frames do; floods, unknown unicast, ARP,
 * IPv6 neighbour discovery and anything else take the bridge, where learning,
 * snooping and suppression see them.
 */
#ifndef VLNET_BYPASS_H
#define VLNET_BYPASS_H

#include "maps.h"

/* ICMPv6 types of neighbour discovery (RFC 4861): router solicitation .. redirect. */
#define ICMPV6_ND_FIRST 133
#define ICMPV6_ND_LAST 137

/* Counts @segs packets under VLNET_BYPASS_RX or VLNET_BYPASS_TX. */
static __always_inline void count_bypass(__u32 which, __u32 segs)
{
	__u64 *counter = bpf_map_lookup_elem(&vlnet_bypass_stats, &which);

	if (counter)
		*counter += segs;
}

/*
 * Whether the frame whose Ethernet header is @eth (a copy) and whose payload
 * starts at @l3 may take the bypass: unicast IPv4, or unicast IPv6 that is
 * not neighbour discovery. An IPv6 packet whose headers do not fit the
 * linear data takes the bridge.
 */
static __always_inline int bypass_kind_ok(const struct ethhdr *eth, void *l3, void *data_end)
{
	struct ipv6hdr *ip6 = l3;
	__u8 *icmp_type;

	if (eth->h_dest[0] & 1)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return 1;
	if (eth->h_proto != bpf_htons(ETH_P_IPV6))
		return 0;
	if ((void *)(ip6 + 1) > data_end)
		return 0;
	if (ip6->nexthdr != IPPROTO_ICMPV6)
		return 1;
	icmp_type = (void *)(ip6 + 1);
	if ((void *)(icmp_type + 1) > data_end)
		return 0;
	return *icmp_type < ICMPV6_ND_FIRST || *icmp_type > ICMPV6_ND_LAST;
}

/*
 * The bypass port of (@vni, @mac), or NULL: the MAC is not a local VM's on a
 * bypass port (or its VNI has no bypass).
 */
static __always_inline struct vlnet_bypass_port *bypass_port(__u32 vni, const __u8 *mac)
{
	struct vlnet_fdb_key key = { .vni = vni };

	__builtin_memcpy(key.mac, mac, ETH_ALEN);
	return bpf_map_lookup_elem(&vlnet_bypass, &key);
}

/*
 * Delivers a decapsulated frame (@segs packets) to its VM's port @bp: into a
 * veth peer's ingress when it sits in another namespace, else out of the
 * port. Returns the TC action.
 */
static __always_inline int bypass_deliver(const struct vlnet_bypass_port *bp, __u32 segs)
{
	__u32 ifindex = bp->ifindex;

	count_bypass(VLNET_BYPASS_RX, segs);
	if (bp->flags & VLNET_BYPASS_PEER)
		return bpf_redirect_peer(ifindex, 0);
	return bpf_redirect(ifindex, 0);
}

/*
 * Delivers a decapsulated XDP frame to its VM's port @ifindex, which takes
 * XDP frames (VLNET_BYPASS_XDP): no skb is built before the VM's side.
 * Returns the XDP action.
 */
static __always_inline int bypass_deliver_xdp(__u32 ifindex)
{
	count_bypass(VLNET_BYPASS_RX, 1);
	return bpf_redirect(ifindex, 0);
}

/* Records that the VM behind @bp sent a frame past the bridge at @now. */
static __always_inline void bypass_seen(struct vlnet_bypass_port *bp, __u64 now)
{
	if (now - bp->seen_ns >= VLNET_BYPASS_SEEN_GAP_NS)
		bp->seen_ns = now;
}

/*
 * (@key's MAC) was learned behind a remote VTEP: a VM that lived here has
 * moved away, so its frames no longer go to its old port.
 */
static __always_inline void bypass_forget(const struct vlnet_fdb_key *key)
{
	bpf_map_delete_elem(&vlnet_bypass, key);
}

#endif
