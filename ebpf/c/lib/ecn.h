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
 * ecn_decap_field() - the inner ECN field after decapsulation (RFC 6040
 * section 4.2, as the kernel's INET_ECN_decapsulate() applies it), or -1 to
 * drop.
 * @outer: the outer header's ECN field.
 * @inner: the inner header's ECN field.
 *
 *	inner \ outer | Not-ECT  ECT(0)   ECT(1)   CE
 *	Not-ECT       | Not-ECT  Not-ECT  Not-ECT  drop
 *	ECT(0)        | ECT(0)   ECT(0)   ECT(1)   CE
 *	ECT(1)        | ECT(1)   ECT(1)   ECT(1)   CE
 *	CE            | CE       CE       CE       CE
 *
 * (The RFC logs the Not-ECT inner cells under an ECT outer as anomalies and
 * forwards them unchanged; so does the kernel.)
 */
static __always_inline int ecn_decap_field(__u8 outer, __u8 inner)
{
	if (inner == INET_ECN_NOT_ECT)
		return outer == INET_ECN_CE ? -1 : INET_ECN_NOT_ECT;
	if (outer == INET_ECN_CE)
		return INET_ECN_CE;
	if (outer == INET_ECN_ECT_1 && inner == INET_ECN_ECT_0)
		return INET_ECN_ECT_1;
	return inner;
}

/**
 * ecn_decap() - apply the outer ECN field to the inner IP header in place
 * (ecn_decap_field()). Returns 0 to forward or VLNET_DROP_ECN_NOT_ECT when an
 * outer CE sits over a Not-ECT inner packet. Non-IP inner frames have no ECN
 * field and are forwarded unchanged.
 */
static __always_inline int ecn_decap(__u8 outer_tos, struct ethhdr *inner_eth, void *data_end)
{
	__u8 outer = outer_tos & INET_ECN_MASK;
	int ecn;

	/* Only CE and ECT(1) change anything: the fast path. */
	if (outer != INET_ECN_CE && outer != INET_ECN_ECT_1)
		return 0;

	if (inner_eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(inner_eth + 1);
		__u16 old, new;

		if ((void *)(ip + 1) > data_end)
			return 0;
		ecn = ecn_decap_field(outer, ip->tos & INET_ECN_MASK);
		if (ecn < 0)
			return VLNET_DROP_ECN_NOT_ECT;
		/* One 16-bit view of version/IHL/TOS, so no access aliases another. */
		old = *(__u16 *)ip;
		new = (old & ~bpf_htons(INET_ECN_MASK)) | bpf_htons(ecn);
		if (new == old)
			return 0;
		*(__u16 *)ip = new;
		ip->check = csum_replace16(ip->check, old, new);
	} else if (inner_eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		/* Traffic class straddles bytes 0 and 1: ECN is bits 4-5 of byte 1. */
		__u8 *hdr = (void *)(inner_eth + 1);

		if ((void *)(hdr + 2) > data_end)
			return 0;
		ecn = ecn_decap_field(outer, (hdr[1] >> 4) & INET_ECN_MASK);
		if (ecn < 0)
			return VLNET_DROP_ECN_NOT_ECT;
		hdr[1] = (hdr[1] & ~(INET_ECN_MASK << 4)) | (ecn << 4);
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
