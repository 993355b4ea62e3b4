/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* ecn.h - ECN across the tunnel, RFC 6040 normal mode, as the kernel vxlan driver. */
#ifndef VLNET_ECN_H
#define VLNET_ECN_H

#include "csum.h"

/**
 * ecn_encap_tos() - outer TOS byte for an inner packet whose TOS/traffic class
 * is @inner: DSCP from @dscp_tos, ECN copied from the inner header except that
 * CE becomes ECT(0) (RFC 6040 section 4.1).
 */
static __always_inline __u8 ecn_encap_tos(__u8 dscp_tos, __u8 inner)
{
	__u8 ecn = inner & INET_ECN_MASK;

	if (ecn == INET_ECN_CE)
		ecn = INET_ECN_ECT_0;
	return (dscp_tos & ~INET_ECN_MASK) | ecn;
}

/**
 * ecn_decap() - apply an outer CE mark to the inner IP header in place
 * (RFC 6040 section 4.2). Returns 0 to forward or VLNET_DROP_ECN_NOT_ECT when
 * an outer CE sits over a Not-ECT inner packet. Non-IP inner frames have no
 * ECN field and are forwarded unchanged.
 */
static __always_inline int ecn_decap(__u8 outer_tos, struct ethhdr *inner_eth, void *data_end)
{
	if ((outer_tos & INET_ECN_MASK) != INET_ECN_CE)
		return 0;

	if (inner_eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(inner_eth + 1);
		__u16 old, new;

		if ((void *)(ip + 1) > data_end)
			return 0;
		if ((ip->tos & INET_ECN_MASK) == INET_ECN_NOT_ECT)
			return VLNET_DROP_ECN_NOT_ECT;
		/* One 16-bit view of version/IHL/TOS, so no access aliases another. */
		old = *(__u16 *)ip;
		new = old | bpf_htons(INET_ECN_CE);
		*(__u16 *)ip = new;
		ip->check = csum_replace16(ip->check, old, new);
	} else if (inner_eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		/* Traffic class straddles bytes 0 and 1: ECN is bits 4-5 of byte 1. */
		__u8 *hdr = (void *)(inner_eth + 1);

		if ((void *)(hdr + 2) > data_end)
			return 0;
		if (((hdr[1] >> 4) & INET_ECN_MASK) == INET_ECN_NOT_ECT)
			return VLNET_DROP_ECN_NOT_ECT;
		hdr[1] |= INET_ECN_CE << 4;
	}
	return 0;
}

/** inner_tos() - TOS / traffic class of the inner IP packet, 0 for non-IP. */
static __always_inline __u8 inner_tos(struct ethhdr *eth, void *data_end)
{
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) <= data_end)
			return ip->tos;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		__u8 *hdr = (void *)(eth + 1);

		if ((void *)(hdr + 2) <= data_end)
			return (hdr[0] << 4) | (hdr[1] >> 4);
	}
	return 0;
}

#endif
