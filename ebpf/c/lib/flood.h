/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * flood.h - head-end replication: one copy of a frame to every VTEP in a
 * range of its VNI's flood list (vlnet_flood), however long the list.
 *
 * The copies are made by bpf_loop(), whose callback the verifier checks
 * once whatever the count, so a VNI's list may hold VLNET_MAX_FLOOD VTEPs
 * (an unrolled or bounded loop of that length would not verify). Each copy
 * but the last is a bpf_clone_redirect(); the skb keeps its headers between
 * copies and only the outer addresses change.
 */
#ifndef VLNET_FLOOD_H
#define VLNET_FLOOD_H

#include "encap.h"

/* What every copy of one flood shares (on the caller's stack). */
struct flood_ctx {
	struct __sk_buff *skb;
	struct encap_ctx *e;
	__u32 first; /* the range's first slot */
	__u32 pad;
};

/* The VTEP in @slot of @vni's flood list, or 0 when the slot is empty. */
static __always_inline __u32 flood_vtep(__u32 vni, __u32 slot)
{
	struct vlnet_flood_key key = { .vni = vni, .slot = slot };
	__u32 *vtep = bpf_map_lookup_elem(&vlnet_flood, &key);

	return vtep ? *vtep : 0;
}

/* Whether a relayed flood skips @vtep: a member the zone floods to itself. */
static __always_inline int relay_skips(const struct encap_ctx *e, __u32 vtep)
{
	struct vlnet_vtep *v;

	if (e->relay_dir != VLNET_RELAY_TO_MEMBERS)
		return 0;
	v = bpf_map_lookup_elem(&vlnet_vteps, &vtep);
	return v && (v->flags & VLNET_VTEP_DIRECT);
}

/* bpf_loop() callback: the copy for slot @i of the range. Failures are counted by encap_send(). */
static long flood_copy(__u64 i, void *data)
{
	struct flood_ctx *f = data;
	__u32 vtep = flood_vtep(f->e->vni, f->first + (__u32)i);

	if (vtep && !relay_skips(f->e, vtep))
		encap_send(f->skb, f->e, vtep, 1);
	return 0;
}

/**
 * flood_range() - send @skb, encapsulated as @e says, to the VTEPs in slots
 * @first .. @end - 1 of its VNI's flood list.
 * @keep: the skb itself stays with the caller (a relay delivers it here
 *	too): every copy is a clone. Otherwise the last slot takes the skb.
 *
 * Return: with @keep, 0; otherwise the TC action for the skb (a redirect to
 * the last VTEP, or a counted drop when the range is empty).
 */
static __always_inline int flood_range(struct __sk_buff *skb, struct encap_ctx *e, __u32 first,
				       __u32 end, int keep)
{
	struct flood_ctx f = { .skb = skb, .e = e, .first = first };
	__u32 clones, last;

	if (end > VLNET_MAX_FLOOD)
		end = VLNET_MAX_FLOOD;
	if (first >= end)
		return keep ? 0 : tc_drop(VLNET_DROP_NO_PEERS);
	clones = end - first - (keep ? 0 : 1);
	if (clones)
		bpf_loop(clones, flood_copy, &f, 0);
	if (keep)
		return 0;
	last = flood_vtep(e->vni, end - 1);
	if (!last)
		return tc_drop(VLNET_DROP_NO_PEERS); /* the list is being rewritten */
	return encap_send(skb, e, last, 0);
}

#endif
