/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* drop.h - the one path every drop goes through, so none is uncounted. */
#ifndef VLNET_DROP_H
#define VLNET_DROP_H

#include "maps.h"

/**
 * count_drop() - count one dropped packet under @reason.
 * @reason: enum vlnet_drop_reason code.
 */
static __always_inline void count_drop(__u32 reason)
{
	__u64 *counter = bpf_map_lookup_elem(&vlnet_drops, &reason);

	if (counter)
		*counter += 1;
}

/**
 * peer_stats() - this CPU's counters for (@vni, @vtep_be), or NULL when the
 * VTEP is not a member of the VNI.
 */
static __always_inline struct vlnet_peer_stats *peer_stats(__u32 vni, __u32 vtep_be)
{
	struct vlnet_peer_key key = { .vni = vni, .vtep_be = vtep_be };

	return bpf_map_lookup_elem(&vlnet_peers, &key);
}

#endif
