/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * decap.h - validation, learning and ECN for received VXLAN, written once for
 * the XDP and TC entry points (which differ only in how they strip headers and
 * redirect).
 */
#ifndef VLNET_DECAP_H
#define VLNET_DECAP_H

#include "bypass.h"
#include "drop.h"
#include "ecn.h"

/* Largest offset of the inner frame: outer Ethernet, IPv4 with options, UDP, VXLAN. */
#define MAX_OUTER_LEN (ETH_HLEN + 60 + 16)

/* decap_classify() result that is neither OK nor a drop reason. */
#define DECAP_NOT_OURS (-1)
#define DECAP_OK 0

/* What a valid VXLAN packet told us. */
struct decap_info {
	__u32 vni;
	__u32 src_vtep_be;
	__u32 overlay_ifindex;
	__u32 inner_len;  /* inner frame bytes, Ethernet header included */
	__u32 outer_len;  /* bytes from the outer Ethernet header to the inner one */
	__u32 vtep_flags; /* VLNET_VTEP_* of the source VTEP */
	__u32 path;       /* VLNET_PATH_* it arrived on */
	__u32 vni_flags;  /* VLNET_VNI_* of the VNI */
	__u32 flood_zone; /* the VNI's flood list: static peers first, then members */
	__u32 flood_count;
	__u8 outer_tos;
	struct vlnet_peer_stats *stats;
	__u64 now_ns;     /* bpf_ktime_get_ns() from decap_prepare(), read once per packet */
};

/* Sum the IPv4 header's 16-bit words; a valid header sums to 0xffff. */
static __always_inline int ipv4_header_valid(const struct iphdr *ip, __u32 ihl_words, void *data_end)
{
	const __u16 *word = (const __u16 *)ip;
	__u32 sum = 0;

	/* The fixed 20 bytes are known to be in bounds. */
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += word[i];
	/* Options: up to 40 more bytes, each word bounds-checked. */
	word += 10;
#pragma clang loop unroll(disable)
	for (__u32 i = 10; i < 30; i++) {
		if (i >= ihl_words * 2)
			break;
		/* Hide the pointer from loop analysis so each check stays. */
		asm volatile("" : "+r"(word));
		if ((void *)(word + 1) > data_end)
			return 0;
		sum += *word;
		word++;
	}
	return csum_fold(sum) == 0;
}

/**
 * decap_classify() - decide what a received packet is.
 * @data, @data_end: the linear bytes of the packet.
 * @frame_len: the whole packet's length (skb->len for TC).
 * @is_gso: the packet is a GSO super-packet (length fields describe the whole).
 * @l2_len: ETH_HLEN for a frame from an Ethernet underlay, 0 for a bare IPv4
 *	packet from an L3 tunnel (a compile-time constant at every call).
 * @local_be: the address VXLAN must be sent to (our VTEP, or our address on
 *	the tunnel).
 * @path: VLNET_PATH_* the packet arrived on (a compile-time constant at every
 *	call): the source VTEP must be bound to it in vlnet_vteps.
 * @di: filled in when the result is DECAP_OK; di->outer_len counts from
 *	@data, so without the Ethernet header for @l2_len 0.
 *
 * Return: DECAP_NOT_OURS to leave the packet to the kernel, DECAP_OK for a
 * valid VXLAN packet of a configured VNI from a member VTEP bound to @path,
 * or the enum vlnet_drop_reason to drop it with.
 */
static __always_inline int decap_classify(void *data, void *data_end, __u32 frame_len,
					  int is_gso, __u32 l2_len, __u32 local_be,
					  __u32 path, struct decap_info *di)
{
	struct vlnet_vni_config *vc;
	struct vlnet_vtep *vtep;
	__u32 src_be;
	struct ethhdr *eth = data;
	struct ethhdr *inner;
	struct vxlan_hdr *vx;
	struct udphdr *udp;
	struct iphdr *ip;
	__u32 ihl, tot_len;

	if (l2_len) {
		if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
			return DECAP_NOT_OURS;
		ip = (void *)(eth + 1);
	} else {
		ip = data;
	}
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
		return DECAP_NOT_OURS;
	if (!local_be || ip->daddr != local_be)
		return DECAP_NOT_OURS;

	/* UDP to our VTEP address from here on: garbage is ours to drop. */
	ihl = ip->ihl;
	if (ip->version != 4 || ihl < 5)
		return VLNET_DROP_BAD_IP_HEADER;
	if (!ipv4_header_valid(ip, ihl, data_end))
		return VLNET_DROP_BAD_IP_HEADER;
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return DECAP_NOT_OURS; /* later fragment: no port to judge by */

	udp = (void *)ip + ihl * 4;
	if ((void *)(udp + 1) > data_end)
		return VLNET_DROP_TRUNCATED;
	if (udp->dest != bpf_htons(VLNET_VXLAN_PORT))
		return DECAP_NOT_OURS;

	/* VXLAN for us. */
	if (ip->frag_off & bpf_htons(IP_MF))
		return VLNET_DROP_FRAGMENT;
	vx = (void *)(udp + 1);
	inner = (void *)(vx + 1);
	if ((void *)(inner + 1) > data_end)
		return VLNET_DROP_TRUNCATED;
	tot_len = bpf_ntohs(ip->tot_len);
	if (!is_gso) {
		if (tot_len + l2_len > frame_len ||
		    tot_len < ihl * 4 + sizeof(*udp) + sizeof(*vx) + ETH_HLEN ||
		    bpf_ntohs(udp->len) != tot_len - ihl * 4)
			return VLNET_DROP_BAD_LENGTH;
	}
	if (vx->flags != bpf_htonl(VXLAN_FLAG_I) || (vx->vni & bpf_htonl(0xff)))
		return VLNET_DROP_BAD_VXLAN_FLAGS;

	di->vni = bpf_ntohl(vx->vni) >> 8;
	vc = bpf_map_lookup_elem(&vlnet_vnis, &di->vni);
	if (!vc)
		return VLNET_DROP_UNKNOWN_VNI;
	src_be = ip->saddr;
	if (src_be == local_be)
		return VLNET_DROP_LOOPED;
	di->stats = peer_stats(di->vni, src_be);
	if (!di->stats)
		return VLNET_DROP_UNKNOWN_VTEP;
	vtep = bpf_map_lookup_elem(&vlnet_vteps, &src_be);
	if (!vtep || vtep->path != path)
		return VLNET_DROP_WRONG_PATH;
	if ((inner->h_source[0] & 1) ||
	    !(inner->h_source[0] | inner->h_source[1] | inner->h_source[2] |
	      inner->h_source[3] | inner->h_source[4] | inner->h_source[5]))
		return VLNET_DROP_BAD_INNER_SOURCE;
	if (!vc->overlay_ifindex)
		return VLNET_DROP_NOT_CONFIGURED;

	di->src_vtep_be = src_be;
	di->vtep_flags = vtep->flags;
	di->path = path;
	di->vni_flags = vc->flags;
	di->flood_zone = vc->flood_zone;
	di->flood_count = vc->flood_count;
	di->overlay_ifindex = vc->overlay_ifindex;
	di->outer_len = (void *)inner - data;
	di->inner_len = frame_len - di->outer_len;
	di->outer_tos = ip->tos;
	return DECAP_OK;
}

/**
 * decap_learn() - what a frame from @di->src_vtep_be with source @mac on
 * @di->vni may do to the FDB. Returns 0 to deliver it or
 * VLNET_DROP_SOURCE_NOT_OWNED.
 *
 * From a VTEP that may not move MACs (a member: no VLNET_VTEP_LEARN), or on
 * a VNI whose MACs come from the control plane only (VLNET_VNI_CONTROL_ONLY:
 * an EVPN VNI, whatever other VNIs the VTEP is a static peer of), a frame
 * writes nothing: it passes when @mac's entry points at that VTEP, or when
 * @mac is unknown here (a member's MACs come through the control plane, as
 * in EVPN; until its advert arrives, replies flood), and is dropped when
 * @mac is held by another VTEP or lives behind this node (vlnet_locals).
 *
 * From a VTEP with VLNET_VTEP_LEARN: static entries are never overridden. A
 * control-plane entry stays as it is while frames confirm it, and becomes a
 * learned one at the frame's VTEP when the MAC shows up elsewhere (a
 * migrated VM moves at once; a MAC new to the FDB loses its bridge bypass,
 * lib/bypass.h). A learned entry is refreshed at most once per
 * FDB_REFRESH_NS to keep map writes off the hot path. No new key is created
 * while the VNI's learning is paused (its FDB share is full).
 */
static __always_inline int decap_learn(const struct decap_info *di, const __u8 *mac)
{
	struct vlnet_fdb_key key = { .vni = di->vni };
	struct vlnet_fdb_entry *old, entry = {};
	__u64 now = di->now_ns;

	__builtin_memcpy(key.mac, mac, ETH_ALEN);
	old = bpf_map_lookup_elem(&vlnet_fdb, &key);
	if (!(di->vtep_flags & VLNET_VTEP_LEARN) || (di->vni_flags & VLNET_VNI_CONTROL_ONLY)) {
		if (old)
			return old->vtep_be == di->src_vtep_be ? 0 : VLNET_DROP_SOURCE_NOT_OWNED;
		if (bpf_map_lookup_elem(&vlnet_locals, &key))
			return VLNET_DROP_SOURCE_NOT_OWNED;
		return 0;
	}
	if (old) {
		if (old->flags & VLNET_FDB_STATIC)
			return 0;
		if ((old->flags & VLNET_FDB_CONTROL) && old->vtep_be == di->src_vtep_be)
			return 0;
		if (old->vtep_be == di->src_vtep_be && now - old->updated_ns < FDB_REFRESH_NS)
			return 0;
		if (old->vtep_be != di->src_vtep_be)
			report_move(di->vni, mac, old->vtep_be, di->src_vtep_be, VLNET_MOVE_REMOTE);
	} else if (di->vni_flags & VLNET_VNI_LEARN_PAUSED) {
		return 0;
	} else {
		/* New here: if it was a local VM's, that VM moved away. */
		bypass_forget(&key);
	}
	entry.vtep_be = di->src_vtep_be;
	entry.flags = VLNET_FDB_LEARNED;
	entry.updated_ns = now;
	bpf_map_update_elem(&vlnet_fdb, &key, &entry, BPF_ANY);
	return 0;
}

/**
 * await_arrival() - @key's MAC moved here: time its first frame from afar.
 */
static __always_inline void await_arrival(const struct vlnet_fdb_key *key)
{
	__u32 slot = VLNET_PENDING_SLOT;
	__u64 now = bpf_ktime_get_ns();
	__u32 *pending = bpf_map_lookup_elem(&vlnet_arrivals_pending, &slot);

	if (pending && !bpf_map_update_elem(&vlnet_arrivals, key, &now, BPF_ANY))
		__sync_fetch_and_add(pending, 1);
}

/**
 * arrival_check() - a frame for @mac came from @di's VTEP: if @mac moved here
 * and awaited its first frame, report the path switch (the time from the
 * move to now is the switch as this node sees it).
 */
static __always_inline void arrival_check(const struct decap_info *di, const __u8 *mac)
{
	__u32 slot = VLNET_PENDING_SLOT;
	__u32 *pending = bpf_map_lookup_elem(&vlnet_arrivals_pending, &slot);
	struct vlnet_fdb_key key = { .vni = di->vni };

	if (!pending || !*pending)
		return;
	__builtin_memcpy(key.mac, mac, ETH_ALEN);
	if (!bpf_map_lookup_elem(&vlnet_arrivals, &key))
		return;
	if (bpf_map_delete_elem(&vlnet_arrivals, &key))
		return; /* another CPU reported it */
	__sync_fetch_and_add(pending, -1);
	report_move(di->vni, mac, di->src_vtep_be, 0, VLNET_MOVE_DELIVERED);
}

/**
 * decap_prepare() - everything the two entry points share once a packet is
 * classified OK: ECN (RFC 6040), learning (or the ownership check of a
 * member's frame) and rx counters. @inner must point into writable packet
 * memory. Returns 0 or a drop reason.
 */
static __always_inline int decap_prepare(struct decap_info *di, struct ethhdr *inner,
					 void *data_end, __u32 segs)
{
	int reason = ecn_decap(di->outer_tos, inner, data_end);

	if (reason)
		return reason;
	di->now_ns = bpf_ktime_get_ns();
	reason = decap_learn(di, inner->h_source);
	if (reason)
		return reason;
	arrival_check(di, inner->h_dest);
	di->stats->rx_packets += segs;
	di->stats->rx_bytes += di->inner_len;
	return 0;
}

#endif
