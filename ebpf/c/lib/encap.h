/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * encap.h - building VXLAN outer headers, resolving the underlay next hop,
 * and sending the encapsulated packet (TC).
 */
#ifndef VLNET_ENCAP_H
#define VLNET_ENCAP_H

#include "drop.h"
#include "ecn.h"
#include "skb.h"

/* Resolution outcomes besides 0 (MACs filled in) and a drop reason. */
#define NEXT_HOP_NEEDS_NEIGH (-1)
#define NEXT_HOP_L3 (-2)

/* BPF_F_ADJ_ROOM_ENCAP_L2(len) from the UAPI header, which BTF cannot carry. */
#define ADJ_ROOM_ENCAP_L2(len) (((__u64)(len) & 0xff) << 56)
#define ENCAP_FLAGS                                                                         \
	(BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP | \
	 BPF_F_ADJ_ROOM_ENCAP_L2_ETH | ADJ_ROOM_ENCAP_L2(ETH_HLEN))

/**
 * flow_source_port() - outer UDP source port from the inner flow hash, spread
 * over the configured range (RFC 7348 section 5: entropy for ECMP).
 */
static __always_inline __be16 flow_source_port(const struct vlnet_node_config *cfg, __u32 hash)
{
	__u32 range = (__u32)cfg->sport_max - cfg->sport_min + 1;

	return bpf_htons(cfg->sport_min + (__u16)(((__u64)hash * range) >> 32));
}

/**
 * encap_init() - fill the outer headers that do not depend on the remote VTEP.
 * @inner_len: inner frame length, Ethernet header included.
 * @tos: inner TOS / traffic class (0 for non-IP).
 */
static __always_inline void encap_init(struct vxlan_encap *h, const struct vlnet_node_config *cfg,
				       __u32 vni, __u32 inner_len, __u8 tos, __be16 sport)
{
	__u8 dscp = cfg->inherit_dscp ? tos : cfg->tos;

	h->eth.h_proto = bpf_htons(ETH_P_IP);
	h->ip.version = 4;
	h->ip.ihl = 5;
	h->ip.tos = ecn_encap_tos(dscp, tos);
	h->ip.tot_len = bpf_htons(inner_len + sizeof(h->ip) + sizeof(h->udp) + sizeof(h->vx));
	h->ip.frag_off = bpf_htons(IP_DF);
	h->ip.ttl = cfg->ttl;
	h->ip.protocol = IPPROTO_UDP;
	h->udp.source = sport;
	h->udp.dest = bpf_htons(VLNET_VXLAN_PORT);
	h->udp.len = bpf_htons(inner_len + sizeof(h->udp) + sizeof(h->vx));
	h->udp.check = 0; /* RFC 7348: SHOULD be zero over IPv4 */
	h->vx.flags = bpf_htonl(VXLAN_FLAG_I);
	h->vx.vni = bpf_htonl(vni << 8);
}

/**
 * encap_set_remote() - address the outer headers to @dst_be: source and
 * destination IP, IPv4 checksum, and the next hop's MACs from vlnet_nexthops.
 * @local_be: the outer source unless the next hop names its own (a tunnel's
 *	address, which the remote end checks against its allowed IPs).
 * @ifindex: set to the egress interface.
 *
 * Return: 0, NEXT_HOP_L3 when the egress is an L3 device (no MACs: the
 * outer Ethernet header is stripped by the redirect), NEXT_HOP_NEEDS_NEIGH
 * when the next hop is not resolved yet, or VLNET_DROP_NO_ROUTE when the
 * daemon found no route to @dst_be.
 */
static __always_inline int encap_set_remote(struct vxlan_encap *h, __u32 local_be, __u32 dst_be,
					    __u32 *ifindex)
{
	struct vlnet_nexthop *nh = bpf_map_lookup_elem(&vlnet_nexthops, &dst_be);

	h->ip.saddr = nh && nh->saddr_be ? nh->saddr_be : local_be;
	h->ip.daddr = dst_be;
	h->ip.check = 0;
	h->ip.check = ipv4_header_csum(&h->ip);

	if (!nh)
		return NEXT_HOP_NEEDS_NEIGH;
	if (!nh->ifindex)
		return VLNET_DROP_NO_ROUTE;
	*ifindex = nh->ifindex;
	if (nh->flags & VLNET_NH_L3)
		return NEXT_HOP_L3;
	__builtin_memcpy(h->eth.h_dest, nh->dmac, ETH_ALEN);
	__builtin_memcpy(h->eth.h_source, nh->smac, ETH_ALEN);
	return 0;
}

/*
 * A frame on its way out to remote VTEPs: the outer headers being built and
 * what sending them depends on. The context pointer comes first, so that it
 * sits in an aligned stack slot (the verifier tracks pointers spilled there).
 */
struct encap_ctx {
	const struct vlnet_node_config *cfg;
	struct vxlan_encap h;
	__u32 vni;
	__u32 inner_len; /* inner frame bytes, Ethernet header included */
	__u32 segs;      /* wire packets the skb stands for */
	__u32 relay_dir; /* VLNET_RELAY_* of a relayed frame, else VLNET_RELAY_DIRECTIONS */
};

/* Counts one copy a gateway relayed in @e's direction. */
static __always_inline void count_relay(const struct encap_ctx *e)
{
	__u32 dir = e->relay_dir;
	struct vlnet_relay_stats *stats;

	if (dir >= VLNET_RELAY_DIRECTIONS)
		return;
	stats = bpf_map_lookup_elem(&vlnet_relay, &dir);
	if (stats) {
		stats->packets += e->segs;
		stats->bytes += e->inner_len;
	}
}

/*
 * Writes @h over the first VLNET_ENCAP_LEN bytes of @skb. A relayed packet
 * (@rcsum) arrived with CHECKSUM_COMPLETE on a NIC that computes it: its
 * skb->csum covers the packet from the network header on, so the IP, UDP
 * and VXLAN headers are written with BPF_F_RECOMPUTE_CSUM and the Ethernet
 * header without.
 */
static __always_inline int encap_store(struct __sk_buff *skb, const struct vxlan_encap *h,
				       int rcsum)
{
	if (!rcsum)
		return bpf_skb_store_bytes(skb, 0, h, sizeof(*h), 0);
	if (bpf_skb_store_bytes(skb, 0, &h->eth, sizeof(h->eth), 0))
		return -1;
	return bpf_skb_store_bytes(skb, sizeof(h->eth), &h->ip, sizeof(*h) - sizeof(h->eth),
				   BPF_F_RECOMPUTE_CSUM);
}

/*
 * Address the encapsulated @skb to @dst_be and send it (@clone: a copy, for
 * every flood target but the last; a relay's flood clones them all). A next
 * hop the daemon has not resolved yet is left to the kernel
 * (bpf_redirect_neigh) for IPv4 packets, the only kind whose skb it can
 * route; other frames are dropped and counted until the managed neighbour
 * entry resolves. A non-IP frame for an L3 next hop takes the hairpin (see
 * hairpin_out() in vtep.bpf.c). Returns a TC action (0 for a copy sent).
 */
static __always_inline int encap_send(struct __sk_buff *skb, struct encap_ctx *e, __u32 dst_be,
				      int clone)
{
	struct vlnet_peer_stats *stats;
	__u32 ifindex = e->cfg->underlay_ifindex, mark;
	int ret, via_kernel = 0, hairpin = 0;

	ret = encap_set_remote(&e->h, e->cfg->local_vtep_be, dst_be, &ifindex);
	if (ret == NEXT_HOP_NEEDS_NEIGH) {
		if (clone || skb->protocol != bpf_htons(ETH_P_IP))
			return tc_drop(VLNET_DROP_NO_NEIGHBOUR);
		via_kernel = 1;
	} else if (ret == NEXT_HOP_L3) {
		/* Grown by bpf_skb_change_head: no network header to redirect by. */
		hairpin = skb->protocol != bpf_htons(ETH_P_IP);
	} else if (ret) {
		return tc_drop(ret);
	}
	if (encap_store(skb, &e->h, e->relay_dir < VLNET_RELAY_DIRECTIONS))
		return tc_drop(VLNET_DROP_ENCAP_FAILED);
	stats = peer_stats(e->vni, dst_be);
	if (stats) {
		stats->tx_packets += e->segs;
		stats->tx_bytes += e->inner_len;
	}
	count_relay(e);
	if (hairpin) {
		mark = skb->mark;
		skb->mark = VLNET_MARK_HAIRPIN;
		if (!clone)
			return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
		ret = bpf_clone_redirect(skb, skb->ifindex, BPF_F_INGRESS);
		skb->mark = mark;
		return ret ? tc_drop(VLNET_DROP_NO_ROUTE) : 0;
	}
	if (clone)
		return bpf_clone_redirect(skb, ifindex, 0) ? tc_drop(VLNET_DROP_NO_ROUTE) : 0;
	if (via_kernel)
		return bpf_redirect_neigh(ifindex, NULL, 0, 0);
	return bpf_redirect(ifindex, 0);
}

#endif
