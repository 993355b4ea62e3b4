/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * neigh.h - ARP and IPv6 ND suppression on the overlay port (tc_overlay_tx),
 * as EVPN's route type 2 with an IP lets a VTEP answer for remote hosts.
 *
 * Snooping: every frame a local VM sends towards the tunnel passes
 * tc_overlay_tx (its broadcasts and multicasts always, its unicast to remote
 * VMs too), so the bindings are read there: an ARP request or reply gives
 * sender IP -> sender MAC, an NS with a source link-layer option gives its
 * source address -> that MAC (DAD's unspecified source gives nothing), an NA
 * with a target link-layer option gives target -> that MAC. Only when the
 * link-layer address is the frame's own source and that MAC lives on this
 * node (vlnet_locals), so a VM can bind addresses only to itself.
 *
 * Zone snooping (neigh_rx): the VMs of a zone's kernel-vxlan nodes (static
 * peers) send nothing through tc_overlay_tx, so their ARP and ND is read
 * where it is decapsulated: frames from a VTEP with VLNET_VTEP_LEARN on the
 * underlay path only (never a member, never the tunnel), with the same
 * rules, as VLNET_NEIGH_ZONE bindings. The zone is trusted as the node's own
 * VMs are: such a binding replaces a control-plane one (a member's) and is
 * never overwritten by the control plane, so a member cannot take a zone
 * VM's address.
 *
 * Answering: a broadcast ARP request or multicast NS from a local VM for a
 * bound address whose MAC is placed behind a remote VTEP is turned, in
 * place, into the reply that VM would send (bytes as Linux sends them) and
 * redirected back out of the overlay port towards the requester: nothing
 * crosses a tunnel. One for a VM on this node went to it through the
 * bridge already and is not sent on. Anything else (no binding, the MAC's
 * place unknown, probes, gratuitous ARP, unicast requests that check a
 * neighbour is alive) floods as before.
 */
#ifndef VLNET_NEIGH_H
#define VLNET_NEIGH_H

#include "csum.h"
#include "decap.h"
#include "skb.h"

#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2
#define ND_NEIGHBOR_SOLICIT 135
#define ND_NEIGHBOR_ADVERT 136
#define ND_OPT_SOURCE_LL 1
#define ND_OPT_TARGET_LL 2
#define ND_HOP_LIMIT 255
#define NA_FLAG_ROUTER 0x80
#define NA_FLAG_SOLICITED 0x40
#define NA_FLAG_OVERRIDE 0x20

/* neigh_tx() result: not answered here, go on with the encap. */
#define NEIGH_CONTINUE (-1)

/* An Ethernet/IPv4 ARP packet (RFC 826). */
struct arp_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
} __attribute__((packed));

/* IPv6 header, then an NS or NA with one link-layer option (RFC 4861 4.3, 4.4). */
struct nd_packet {
	__u8 vtcfl[4]; /* version, traffic class, flow label */
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 type;
	__u8 code;
	__u16 csum;
	__u8 flags; /* NA: R, S, O */
	__u8 reserved[3];
	__u8 target[16];
	__u8 opt_type;
	__u8 opt_len; /* in units of 8 bytes */
	__u8 opt_mac[ETH_ALEN];
} __attribute__((packed));

#define ARP_FRAME_LEN (ETH_HLEN + 28)
#define ND_MSG_LEN 32
#define NA_FRAME_LEN (ETH_HLEN + 40 + ND_MSG_LEN)

_Static_assert(sizeof(struct arp_ipv4) == 28, "ARP packet size");
_Static_assert(sizeof(struct nd_packet) == 40 + ND_MSG_LEN, "ND packet size");

/* Counts one event under VLNET_SUPPRESS_* @index. */
static __always_inline void count_suppress(__u32 index)
{
	__u64 *counter = bpf_map_lookup_elem(&vlnet_suppress, &index);

	if (counter)
		*counter += 1;
}

static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	return !__builtin_memcmp(a, b, ETH_ALEN);
}

static __always_inline int bytes_zero(const __u8 *p, __u32 n)
{
	__u8 any = 0;

#pragma unroll
	for (__u32 i = 0; i < 16; i++)
		if (i < n)
			any |= p[i];
	return !any;
}

/* The binding of @ip (@len bytes of @family) on @vni, or NULL. */
static __always_inline struct vlnet_neigh *neigh_lookup(__u32 vni, __u8 family, const __u8 *ip,
						       __u32 len)
{
	struct vlnet_neigh_key key = { .vni = vni, .family = family };

	if (len == 4)
		__builtin_memcpy(key.ip, ip, 4);
	else
		__builtin_memcpy(key.ip, ip, 16);
	return bpf_map_lookup_elem(&vlnet_neigh, &key);
}

/*
 * Records @ip -> @mac (the frame's source) on @vni as @kind
 * (VLNET_NEIGH_LOCAL: only if @mac lives on this node; VLNET_NEIGH_ZONE)
 * plus @router. A binding to another MAC of a kind @kind may not replace
 * stays (a duplicate address: a local VM's snoop yields to the control
 * plane and to the zone, the zone's to a local VM); an unchanged one is not
 * written again.
 */
static __always_inline void neigh_snoop(__u32 vni, __u8 family, const __u8 *ip, __u32 len,
					const __u8 *mac, __u8 kind, __u8 router)
{
	struct vlnet_neigh_key key = { .vni = vni, .family = family };
	struct vlnet_fdb_key local = { .vni = vni };
	struct vlnet_neigh val = { .flags = kind | router };
	struct vlnet_neigh *old;
	__u8 kept = kind == VLNET_NEIGH_ZONE ? VLNET_NEIGH_LOCAL :
					       VLNET_NEIGH_CONTROL | VLNET_NEIGH_ZONE;

	__builtin_memcpy(local.mac, mac, ETH_ALEN);
	if (kind == VLNET_NEIGH_LOCAL && !bpf_map_lookup_elem(&vlnet_locals, &local))
		return;
	if (len == 4)
		__builtin_memcpy(key.ip, ip, 4);
	else
		__builtin_memcpy(key.ip, ip, 16);
	__builtin_memcpy(val.mac, mac, ETH_ALEN);
	old = bpf_map_lookup_elem(&vlnet_neigh, &key);
	if (old) {
		if (!mac_equal(old->mac, mac) && (old->flags & kept))
			return;
		if (mac_equal(old->mac, mac) && old->flags == val.flags)
			return;
	}
	if (bpf_map_update_elem(&vlnet_neigh, &key, &val, BPF_ANY))
		count_suppress(VLNET_SUPPRESS_SNOOP_FULL);
}

/* neigh_place() results. */
#define NEIGH_UNKNOWN 0 /* the bound MAC's place is unknown: flood */
#define NEIGH_REMOTE 1  /* behind a remote VTEP: answer here */
#define NEIGH_LOCAL 2   /* on this node: its bridge delivered the request */

/* Where the MAC @mac of a binding on @vni lives. */
static __always_inline int neigh_place(__u32 vni, const __u8 *mac)
{
	struct vlnet_fdb_key key = { .vni = vni };

	__builtin_memcpy(key.mac, mac, ETH_ALEN);
	if (bpf_map_lookup_elem(&vlnet_fdb, &key))
		return NEIGH_REMOTE;
	if (bpf_map_lookup_elem(&vlnet_locals, &key))
		return NEIGH_LOCAL;
	return NEIGH_UNKNOWN;
}

/*
 * Makes @skb the @len-byte answer: Ethernet from @mac (the bound MAC) to
 * @to, then the @body_len bytes at @body; sends it back out of the overlay
 * port it arrived on, towards the requester.
 */
static __always_inline int neigh_answer(struct __sk_buff *skb, const __u8 *mac, const __u8 *to,
					__be16 proto, const void *body, __u32 body_len)
{
	struct ethhdr eth;
	__u32 len = ETH_HLEN + body_len;

	__builtin_memcpy(eth.h_dest, to, ETH_ALEN);
	__builtin_memcpy(eth.h_source, mac, ETH_ALEN);
	eth.h_proto = proto;
	if (CTX_READ(skb, len) != len && bpf_skb_change_tail(skb, len, 0))
		return NEIGH_CONTINUE;
	if (bpf_skb_store_bytes(skb, 0, &eth, ETH_HLEN, BPF_F_RECOMPUTE_CSUM) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, body, body_len, BPF_F_RECOMPUTE_CSUM))
		return tc_drop(VLNET_DROP_ENCAP_FAILED);
	return bpf_redirect(CTX_READ(skb, ifindex), 0);
}

/*
 * Whether @a is an Ethernet/IPv4 ARP request or reply with a sender address
 * (a probe, sender 0.0.0.0, binds nothing and is never answered).
 */
static __always_inline int arp_usable(const struct arp_ipv4 *a)
{
	return a->htype == bpf_htons(ARPHRD_ETHER) && a->ptype == bpf_htons(ETH_P_IP) &&
	       a->hlen == ETH_ALEN && a->plen == 4 &&
	       (a->op == bpf_htons(ARPOP_REQUEST) || a->op == bpf_htons(ARPOP_REPLY)) &&
	       !bytes_zero(a->spa, 4);
}

/* Records the sender binding of the usable ARP packet @a from @eth as @kind. */
static __always_inline void arp_snoop(__u32 vni, const struct ethhdr *eth,
				      const struct arp_ipv4 *a, __u8 kind)
{
	if (mac_equal(a->sha, eth->h_source))
		neigh_snoop(vni, VLNET_FAMILY_IPV4, a->spa, 4, a->sha, kind, 0);
}

/* ARP from a local VM: snoop, and answer a broadcast request for a remote binding. */
static __always_inline int arp_tx(struct __sk_buff *skb, __u32 vni, const struct ethhdr *eth)
{
	struct vlnet_neigh *b;
	struct arp_ipv4 a;
	__u8 mac[ETH_ALEN], tpa[4];
	int place;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &a, sizeof(a)) || !arp_usable(&a))
		return NEIGH_CONTINUE;
	arp_snoop(vni, eth, &a, VLNET_NEIGH_LOCAL);
	/* Gratuitous ARP announces; a unicast request checks the neighbour lives. */
	if (a.op != bpf_htons(ARPOP_REQUEST) || !(eth->h_dest[0] & 1) ||
	    !__builtin_memcmp(a.spa, a.tpa, 4))
		return NEIGH_CONTINUE;
	b = neigh_lookup(vni, VLNET_FAMILY_IPV4, a.tpa, 4);
	if (!b)
		return NEIGH_CONTINUE;
	__builtin_memcpy(mac, b->mac, ETH_ALEN);
	if (mac_equal(mac, eth->h_source))
		return NEIGH_CONTINUE;
	place = neigh_place(vni, mac);
	if (place == NEIGH_LOCAL) {
		count_suppress(VLNET_SUPPRESS_ARP_LOCAL);
		return TC_ACT_SHOT;
	}
	if (place != NEIGH_REMOTE)
		return NEIGH_CONTINUE;
	/* The request becomes the reply in place (RFC 826). */
	__builtin_memcpy(tpa, a.tpa, 4);
	a.op = bpf_htons(ARPOP_REPLY);
	__builtin_memcpy(a.tha, a.sha, ETH_ALEN);
	__builtin_memcpy(a.tpa, a.spa, 4);
	__builtin_memcpy(a.sha, mac, ETH_ALEN);
	__builtin_memcpy(a.spa, tpa, 4);
	place = neigh_answer(skb, mac, a.tha, bpf_htons(ETH_P_ARP), &a, sizeof(a));
	if (place != NEIGH_CONTINUE)
		count_suppress(VLNET_SUPPRESS_ARP_REPLIED);
	return place;
}

/* The ICMPv6 checksum of @nd's message (its checksum field zero; RFC 8200 8.1). */
static __always_inline __u16 nd_checksum(const struct nd_packet *nd)
{
	__be32 tail[2] = { bpf_htonl(ND_MSG_LEN), bpf_htonl(IPPROTO_ICMPV6) };
	__s64 sum;

	sum = bpf_csum_diff(NULL, 0, (__be32 *)nd->saddr, 32, 0);
	sum = bpf_csum_diff(NULL, 0, tail, sizeof(tail), (__u32)sum);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&nd->type, ND_MSG_LEN, (__u32)sum);
	return csum_fold((__u32)sum);
}

/*
 * Whether @n is an ND message with one link-layer option first, @eth's
 * source (RFC 4861 7.1: hop limit 255, code 0).
 */
static __always_inline int nd_usable(const struct nd_packet *n, const struct ethhdr *eth)
{
	return (n->vtcfl[0] >> 4) == 6 && n->nexthdr == IPPROTO_ICMPV6 &&
	       n->hop_limit == ND_HOP_LIMIT && n->code == 0 &&
	       bpf_ntohs(n->payload_len) >= ND_MSG_LEN && n->opt_len == 1 &&
	       mac_equal(n->opt_mac, eth->h_source);
}

/* Whether the usable @n is an NS with a source link-layer option and a unicast source. */
static __always_inline int ns_binds(const struct nd_packet *n)
{
	/* DAD's NS (unspecified source) carries no option and fails nd_usable(). */
	return n->type == ND_NEIGHBOR_SOLICIT && n->opt_type == ND_OPT_SOURCE_LL &&
	       !bytes_zero(n->saddr, 16) && n->saddr[0] != 0xff;
}

/*
 * Records the binding the usable ND message @n announces as @kind: an NA's
 * target (R flag kept), an NS's source.
 */
static __always_inline void nd_snoop(__u32 vni, const struct nd_packet *n, __u8 kind)
{
	if (n->type == ND_NEIGHBOR_ADVERT && n->opt_type == ND_OPT_TARGET_LL &&
	    n->target[0] != 0xff)
		neigh_snoop(vni, VLNET_FAMILY_IPV6, n->target, 16, n->opt_mac, kind,
			    (n->flags & NA_FLAG_ROUTER) ? VLNET_NEIGH_ROUTER : 0);
	else if (ns_binds(n))
		neigh_snoop(vni, VLNET_FAMILY_IPV6, n->saddr, 16, n->opt_mac, kind, 0);
}

/* IPv6 ND from a local VM: snoop NS and NA, answer a multicast NS for a remote binding. */
static __always_inline int nd_tx(struct __sk_buff *skb, __u32 vni, const struct ethhdr *eth)
{
	struct vlnet_neigh *b;
	struct nd_packet n;
	__u8 mac[ETH_ALEN], flags;
	int place;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &n, sizeof(n)) || !nd_usable(&n, eth))
		return NEIGH_CONTINUE;
	nd_snoop(vni, &n, VLNET_NEIGH_LOCAL);
	if (!ns_binds(&n) || !(eth->h_dest[0] & 1))
		return NEIGH_CONTINUE;
	b = neigh_lookup(vni, VLNET_FAMILY_IPV6, n.target, 16);
	if (!b)
		return NEIGH_CONTINUE;
	__builtin_memcpy(mac, b->mac, ETH_ALEN);
	flags = NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE;
	if (b->flags & VLNET_NEIGH_ROUTER)
		flags |= NA_FLAG_ROUTER;
	if (mac_equal(mac, eth->h_source))
		return NEIGH_CONTINUE;
	place = neigh_place(vni, mac);
	if (place == NEIGH_LOCAL) {
		count_suppress(VLNET_SUPPRESS_ND_LOCAL);
		return TC_ACT_SHOT;
	}
	if (place != NEIGH_REMOTE)
		return NEIGH_CONTINUE;
	/* The NS becomes the NA in place, as Linux's ndisc_send_na() builds it. */
	__builtin_memset(n.vtcfl, 0, sizeof(n.vtcfl));
	n.vtcfl[0] = 0x60;
	n.payload_len = bpf_htons(ND_MSG_LEN);
	__builtin_memcpy(n.daddr, n.saddr, 16);
	__builtin_memcpy(n.saddr, n.target, 16);
	n.type = ND_NEIGHBOR_ADVERT;
	n.csum = 0;
	n.flags = flags;
	__builtin_memset(n.reserved, 0, sizeof(n.reserved));
	n.opt_type = ND_OPT_TARGET_LL;
	__builtin_memcpy(n.opt_mac, mac, ETH_ALEN);
	n.csum = nd_checksum(&n);
	place = neigh_answer(skb, mac, eth->h_source, bpf_htons(ETH_P_IPV6), &n, sizeof(n));
	if (place != NEIGH_CONTINUE)
		count_suppress(VLNET_SUPPRESS_ND_REPLIED);
	return place;
}

/**
 * neigh_tx() - ARP/ND suppression for a frame from a local VM entering the
 * overlay port of @vni; @eth is a copy of its Ethernet header, @suppress the
 * VNI's VLNET_VNI_ARP_SUPPRESS.
 *
 * With suppression off the VNI behaves as without it: nothing is snooped
 * or answered.
 *
 * Return: a TC action when the frame was answered (or held back) here,
 * NEIGH_CONTINUE to encapsulate it as usual. Packet pointers taken before
 * the call are invalid after it.
 */
static __always_inline int neigh_tx(struct __sk_buff *skb, __u32 vni, const struct ethhdr *eth,
				    int suppress)
{
	if (!suppress)
		return NEIGH_CONTINUE;
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return arp_tx(skb, vni, eth);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return nd_tx(skb, vni, eth);
	return NEIGH_CONTINUE;
}

/* Bytes after the inner Ethernet header that neigh_rx() reads at most. */
#define NEIGH_RX_LEN sizeof(struct nd_packet)

/*
 * Whether neigh_rx() reads the frame @di classified: suppression on, from a
 * static peer, on a VNI that learns from frames.
 */
static __always_inline int neigh_rx_wanted(const struct decap_info *di)
{
	return (di->vni_flags & VLNET_VNI_ARP_SUPPRESS) && (di->vtep_flags & VLNET_VTEP_LEARN) &&
	       !(di->vni_flags & VLNET_VNI_CONTROL_ONLY) && di->path == VLNET_PATH_UNDERLAY;
}

/**
 * neigh_rx() - zone snooping: records the ARP/ND binding a frame
 * decapsulated from a static peer announces as VLNET_NEIGH_ZONE (see the
 * header comment), when the VNI suppresses ARP. @inner is the inner
 * Ethernet header in packet memory up to @data_end (the XDP and TC decap
 * alike; TC pulls NEIGH_RX_LEN bytes after it first). Frames from members
 * or through the tunnel are never read.
 */
static __always_inline void neigh_rx(const struct decap_info *di, const struct ethhdr *inner,
				     void *data_end)
{
	/* Read in place: a copy would not fit the decap's stack. */
	const struct nd_packet *n = (const void *)(inner + 1);
	const struct arp_ipv4 *a = (const void *)(inner + 1);

	if (!neigh_rx_wanted(di))
		return;
	if (inner->h_proto == bpf_htons(ETH_P_ARP)) {
		if ((void *)(a + 1) <= data_end && arp_usable(a))
			arp_snoop(di->vni, inner, a, VLNET_NEIGH_ZONE);
	} else if (inner->h_proto == bpf_htons(ETH_P_IPV6)) {
		if ((void *)(n + 1) <= data_end && nd_usable(n, inner))
			nd_snoop(di->vni, n, VLNET_NEIGH_ZONE);
	}
}

#endif
