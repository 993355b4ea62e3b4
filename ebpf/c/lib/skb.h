/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* skb.h - what the TC programs share about the socket buffer they run on. */
#ifndef VLNET_SKB_H
#define VLNET_SKB_H

#include "drop.h"

/*
 * 32-bit context fields read with one fixed-offset load each: clang may
 * otherwise keep field offsets in registers and form "ctx + reg" pointers,
 * which the verifier rejects ("dereference of modified ctx ptr").
 */
#define CTX_READ(ctx, field)                                                        \
	({                                                                          \
		__u64 __v; /* the u32 load zero-extends */                       \
		asm volatile("%0 = *(u32 *)(%1 + %2)"                               \
			     : "=r"(__v)                                            \
			     : "r"(ctx), "i"(__builtin_offsetof(typeof(*(ctx)), field))); \
		__v;                                                                \
	})
#define SKB_DATA(skb) ((void *)(long)CTX_READ(skb, data))
#define SKB_DATA_END(skb) ((void *)(long)CTX_READ(skb, data_end))

/*
 * Wire packets an skb stands for: a GSO super-packet counts as its segments
 * (gso_segs when the stack filled it in, else estimated from gso_size).
 */
static __always_inline __u32 skb_segments(struct __sk_buff *skb)
{
	__u32 gso_size = CTX_READ(skb, gso_size);
	__u32 segs = CTX_READ(skb, gso_segs);

	if (!gso_size)
		return 1;
	if (segs > 1)
		return segs;
	return (CTX_READ(skb, len) + gso_size - 1) / gso_size;
}

/* Counts a drop under @reason; the TC verdict that drops. */
static __always_inline int tc_drop(__u32 reason)
{
	count_drop(reason);
	return TC_ACT_SHOT;
}

/* Makes the first @want bytes (or the whole packet, if shorter) linear. */
static __always_inline void tc_pull(struct __sk_buff *skb, __u32 want)
{
	__u32 linear = SKB_DATA_END(skb) - SKB_DATA(skb);
	__u32 len = CTX_READ(skb, len);

	if (linear < want && len > linear)
		bpf_skb_pull_data(skb, len < want ? len : want);
}

#endif
