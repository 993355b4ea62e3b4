/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * relay.h - a gateway's relay (VLNET_CFG_RELAY) between its static peers,
 * the zone (an unmodified Proxmox SDN zone's kernel-vxlan nodes: VTEPs with
 * VLNET_VTEP_LEARN), and its members (clients joined through WireGuard:
 * VTEPs without it). It runs at TC decap time, before the bridge: a frame
 * to relay gets new outer headers in place, as encap writes them for a
 * local frame (TTL, DSCP, RFC 6040 ECN from the inner header, after the
 * decap's own ECN rule; outer source port from the arriving packet's flow
 * hash, which its sender drew from the inner flow), and the inner frame
 * goes on byte for byte. The zone's nodes see the gateway's VTEP as the
 * source and learn the members' MACs behind it.
 *
 * Split horizon: a flood (broadcast, multicast, unknown unicast) from the
 * zone is delivered here and copied to every member but the direct ones
 * (VLNET_VTEP_DIRECT: the zone floods to them itself), never back to the
 * zone (whose nodes replicate among themselves); a flood from a member is
 * delivered here and copied to the zone, never to other members (a member
 * floods to every other member itself). A known unicast frame for a VTEP
 * on the other side goes there only. Nothing crosses within one side.
 *
 * Trust: a member's frame is relayed only if its inner source MAC is
 * placed behind that member in the FDB (a control-plane route the
 * controller granted it); else a unicast frame is dropped and a flood is
 * delivered here only, both counted as VLNET_DROP_RELAY_NOT_OWNED. A member
 * reaches only the zone's VTEPs of a VNI granted to it, and the zone
 * reaches a member only for MACs it holds on VNIs it serves.
 */
#ifndef VLNET_RELAY_H
#define VLNET_RELAY_H

#include "decap.h"
#include "flood.h"

/* What a relay does with a decapsulated frame (struct relay_plan.kind). */
#define RELAY_NONE 0    /* deliver it here only */
#define RELAY_UNICAST 1 /* send it to one VTEP on the other side, not here */
#define RELAY_FLOOD 2   /* deliver it here and copy it to the other side */
#define RELAY_REFUSED 3 /* a member's flood from a MAC it does not own: deliver it here
			 * only, and count VLNET_DROP_RELAY_NOT_OWNED once it is (a frame
			 * the decap drops counts under that reason alone) */

/* A relay decision. */
struct relay_plan {
	__u32 kind;    /* RELAY_* */
	__u32 dir;     /* VLNET_RELAY_* */
	__u32 vtep_be; /* RELAY_UNICAST: where to */
};

/* Whether this node is a gateway. */
static __always_inline int relaying(const struct vlnet_node_config *cfg)
{
	return cfg && (cfg->flags & VLNET_CFG_RELAY);
}

/* Whether a VTEP with vlnet_vtep.flags @flags is a member (else a static peer). */
static __always_inline int vtep_is_member(__u32 flags)
{
	return !(flags & VLNET_VTEP_LEARN);
}

/* Whether @mac on @di->vni is placed behind @di's VTEP. */
static __always_inline int source_owned(const struct decap_info *di, const __u8 *mac)
{
	struct vlnet_fdb_key key = { .vni = di->vni };
	struct vlnet_fdb_entry *entry;

	__builtin_memcpy(key.mac, mac, ETH_ALEN);
	entry = bpf_map_lookup_elem(&vlnet_fdb, &key);
	return entry && entry->vtep_be == di->src_vtep_be;
}

/**
 * relay_decide() - what a gateway does with the classified frame @inner
 * from @di's VTEP (see the header comment), before anything is learned.
 *
 * Return: 0 with @plan filled in, or VLNET_DROP_RELAY_NOT_OWNED for a
 * member's unicast frame to relay whose source it does not own (its flood
 * gets RELAY_REFUSED).
 */
static __always_inline int relay_decide(const struct decap_info *di, const struct ethhdr *inner,
					struct relay_plan *plan)
{
	struct vlnet_fdb_key key = { .vni = di->vni };
	int from_member = vtep_is_member(di->vtep_flags);
	struct vlnet_fdb_entry *dst;
	struct vlnet_vtep *target;
	__u32 target_be;

	plan->kind = RELAY_NONE;
	plan->dir = from_member ? VLNET_RELAY_TO_ZONE : VLNET_RELAY_TO_MEMBERS;
	if (inner->h_dest[0] & 1) {
		plan->kind = RELAY_FLOOD;
	} else {
		__builtin_memcpy(key.mac, inner->h_dest, ETH_ALEN);
		dst = bpf_map_lookup_elem(&vlnet_fdb, &key);
		if (!dst) {
			if (bpf_map_lookup_elem(&vlnet_locals, &key))
				return 0; /* a VM here */
			plan->kind = RELAY_FLOOD; /* unknown unicast */
		} else {
			target_be = dst->vtep_be;
			target = bpf_map_lookup_elem(&vlnet_vteps, &target_be);
			if (!target || vtep_is_member(target->flags) == from_member ||
			    !peer_stats(di->vni, target_be))
				return 0; /* the same side (or no peer of the VNI) */
			plan->kind = RELAY_UNICAST;
			plan->vtep_be = target_be;
		}
	}
	if (!from_member || source_owned(di, inner->h_source))
		return 0;
	if (plan->kind == RELAY_UNICAST)
		return VLNET_DROP_RELAY_NOT_OWNED;
	plan->kind = RELAY_REFUSED;
	return 0;
}

/*
 * Makes the outer headers exactly VLNET_ENCAP_LEN bytes long (an outer IPv4
 * header with options loses them), so that the relay writes its own over
 * them in place. Returns 0 or a drop reason.
 */
static __always_inline int relay_outer(struct __sk_buff *skb, struct decap_info *di)
{
	__u32 outer = di->outer_len;

	if (outer == VLNET_ENCAP_LEN)
		return 0;
	if (outer < VLNET_ENCAP_LEN || outer > MAX_OUTER_LEN)
		return VLNET_DROP_DECAP_FAILED;
	if (bpf_skb_adjust_room(skb, -(__s32)(outer - VLNET_ENCAP_LEN), BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO))
		return VLNET_DROP_DECAP_FAILED;
	di->outer_len = VLNET_ENCAP_LEN;
	return 0;
}

/**
 * relay() - carry out @plan for @skb, classified as @di (ECN already
 * decapsulated into the inner header, whose TOS is @tos).
 * @segs: wire packets the skb stands for.
 *
 * A frame that does not fit the path MTU as a local frame would not
 * (VLNET_DROP_MTU_EXCEEDED), and one whose outer options cannot be removed,
 * is not relayed.
 *
 * Return: for RELAY_UNICAST the TC action for the skb; for RELAY_FLOOD 0
 * (every copy is a clone: the skb is still to be delivered here).
 */
static __always_inline int relay(struct __sk_buff *skb, struct decap_info *di,
				 const struct vlnet_node_config *cfg, const struct relay_plan *plan,
				 __u8 tos, __u32 segs)
{
	struct encap_ctx e = {
		.cfg = cfg,
		.vni = di->vni,
		.inner_len = di->inner_len,
		.segs = segs,
		.relay_dir = plan->dir,
	};
	int ret = 0;

	if (!CTX_READ(skb, gso_size) &&
	    di->inner_len - ETH_HLEN > cfg->underlay_mtu - VLNET_ENCAP_LEN)
		ret = VLNET_DROP_MTU_EXCEEDED;
	if (!ret)
		ret = relay_outer(skb, di);
	if (ret) {
		if (plan->kind == RELAY_UNICAST)
			return tc_drop(ret);
		count_drop(ret);
		return 0;
	}
	encap_init(&e.h, cfg, di->vni, di->inner_len, tos,
		   flow_source_port(cfg, bpf_get_hash_recalc(skb)));
	if (plan->kind == RELAY_UNICAST)
		return encap_send(skb, &e, plan->vtep_be, 0);
	if (plan->dir == VLNET_RELAY_TO_MEMBERS)
		return flood_range(skb, &e, di->flood_zone, di->flood_count, 1);
	return flood_range(skb, &e, 0, di->flood_zone, 1);
}

#endif
