/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* csum.h - Internet checksum arithmetic (RFC 1071, RFC 1624). */
#ifndef VLNET_CSUM_H
#define VLNET_CSUM_H

#include "common.h"

/** csum_fold() - fold a 32-bit one's-complement sum to 16 bits. */
static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/**
 * csum_replace16() - RFC 1624 incremental update of @check when one 16-bit
 * word changes from @old to @new (all in network order).
 */
static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + new;

	return csum_fold(sum);
}

/**
 * ipv4_header_csum() - checksum over a 20-byte IPv4 header whose check field
 * is zero (headers vlnet builds never carry options).
 */
static __always_inline __u16 ipv4_header_csum(const void *ip)
{
	const __u16 *word = ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += word[i];
	return csum_fold(sum);
}

#endif
