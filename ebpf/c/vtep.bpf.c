/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * vtep.bpf.c - vlnet's VXLAN tunnel endpoint (RFC 7348).
 *
 * Entry points, by hook:
 *   xdp_underlay_rx   XDP on the underlay: validate, learn, decap, redirect
 *                     into the VNI's overlay port (DEVMAP).
 *   tc_underlay_rx    the same at TC ingress (keeps GSO/GRO; default on veth).
 *   tc_overlay_tx     TC ingress on vlnet's end of an overlay port: FDB lookup,
 *                     encap, unicast or head-end replication to the underlay.
 *   xdp_overlay_pass  XDP on the bridge's end of an overlay port in XDP mode:
 *                     a veth delivers XDP redirects only to a peer with XDP.
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/drop.h"
#include "lib/decap.h"
#include "lib/encap.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Outer headers (with the longest IPv4 header) plus an inner IPv6 header. */
#define RX_PULL_LEN (ETH_HLEN + 60 + 16 + ETH_HLEN + 40)
/* Inner Ethernet plus an inner IPv6 header. */
#define TX_PULL_LEN (ETH_HLEN + 40)
/* Largest offset of the inner frame: outer Ethernet, IPv4 with options, UDP, VXLAN. */
#define MAX_OUTER_LEN (ETH_HLEN + 60 + 16)

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

static __always_inline int tc_drop(__u32 reason)
{
	count_drop(reason);
	return TC_ACT_SHOT;
}

static __always_inline void tc_pull(struct __sk_buff *skb, __u32 want)
{
	__u32 linear = SKB_DATA_END(skb) - SKB_DATA(skb);
	__u32 len = CTX_READ(skb, len);

	if (linear < want && len > linear)
		bpf_skb_pull_data(skb, len < want ? len : want);
}

SEC("xdp")
int xdp_underlay_rx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct decap_info di = {};
	struct ethhdr *inner;
	int ret;

	ret = decap_classify(data, data_end, data_end - data, 0, &di);
	if (ret == DECAP_NOT_OURS)
		return XDP_PASS;
	if (ret)
		goto drop;
	ret = VLNET_DROP_TRUNCATED;
	if (di.outer_len > MAX_OUTER_LEN)
		goto drop;
	inner = data + di.outer_len;
	if ((void *)(inner + 1) > data_end)
		goto drop;
	ret = decap_prepare(&di, inner, data_end, 1);
	if (ret)
		goto drop;
	ret = VLNET_DROP_DECAP_FAILED;
	if (bpf_xdp_adjust_head(ctx, di.outer_len))
		goto drop;
	/* A port missing from the DEVMAP makes the redirect answer XDP_DROP. */
	if (bpf_redirect_map(&vlnet_xdp_ports, di.overlay_ifindex, XDP_DROP) == XDP_REDIRECT)
		return XDP_REDIRECT;
	ret = VLNET_DROP_NOT_CONFIGURED;
drop:
	count_drop(ret);
	return XDP_DROP;
}

SEC("classifier")
int tc_underlay_rx(struct __sk_buff *skb)
{
	struct decap_info di = {};
	struct ethhdr *inner, eth;
	void *data, *data_end;
	__u64 flags;
	int ret;

	tc_pull(skb, RX_PULL_LEN);
	data = SKB_DATA(skb);
	data_end = SKB_DATA_END(skb);
	ret = decap_classify(data, data_end, CTX_READ(skb, len), CTX_READ(skb, gso_size) != 0, &di);
	if (ret == DECAP_NOT_OURS)
		return TC_ACT_OK;
	if (ret)
		return tc_drop(ret);
	if (di.outer_len > MAX_OUTER_LEN)
		return tc_drop(VLNET_DROP_TRUNCATED);
	inner = data + di.outer_len;
	if ((void *)(inner + 1) > data_end)
		return tc_drop(VLNET_DROP_TRUNCATED);
	ret = decap_prepare(&di, inner, data_end, skb_segments(skb));
	if (ret)
		return tc_drop(ret);

	__builtin_memcpy(&eth, inner, sizeof(eth));
	flags = BPF_F_ADJ_ROOM_FIXED_GSO;
	if (eth.h_proto == bpf_htons(ETH_P_IPV6))
		flags |= BPF_F_ADJ_ROOM_DECAP_L3_IPV6;
	else if (eth.h_proto == bpf_htons(ETH_P_IP))
		flags |= BPF_F_ADJ_ROOM_DECAP_L3_IPV4;
	if (bpf_skb_adjust_room(skb, -(__s32)di.outer_len,
				BPF_ADJ_ROOM_MAC, flags) ||
	    bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0))
		return tc_drop(VLNET_DROP_DECAP_FAILED);
	return bpf_redirect(di.overlay_ifindex, 0);
}

/* Grow @skb by the outer headers; IP frames keep GSO, others get a new head. */
static __always_inline int encap_grow(struct __sk_buff *skb, struct ethhdr *inner_eth)
{
	if (skb->protocol == bpf_htons(ETH_P_IP) || skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_adjust_room(skb, VLNET_ENCAP_LEN, BPF_ADJ_ROOM_MAC, ENCAP_FLAGS))
			return VLNET_DROP_ENCAP_FAILED;
		/* The room opened after the MAC header: put the inner one back. */
		if (bpf_skb_store_bytes(skb, VLNET_ENCAP_LEN, inner_eth, ETH_HLEN, 0))
			return VLNET_DROP_ENCAP_FAILED;
		return 0;
	}
	if (bpf_skb_change_head(skb, VLNET_ENCAP_LEN, 0))
		return VLNET_DROP_ENCAP_FAILED;
	return 0;
}

/*
 * Address the encapsulated @skb to @dst_be and send it (@clone: a copy, for
 * every flood target but the last). A next hop the daemon has not resolved
 * yet is left to the kernel (bpf_redirect_neigh) for IPv4 packets, the only
 * kind whose skb it can route; other frames are dropped and counted until
 * the managed neighbour entry resolves. Returns a TC action.
 */
static __always_inline int encap_send(struct __sk_buff *skb, struct vxlan_encap *h,
				      const struct vlnet_node_config *cfg, __u32 vni,
				      __u32 dst_be, __u32 inner_len, int clone)
{
	struct vlnet_peer_stats *stats;
	__u32 ifindex = cfg->underlay_ifindex;
	int ret, via_kernel = 0;

	ret = encap_set_remote(h, dst_be, &ifindex);
	if (ret == NEXT_HOP_NEEDS_NEIGH) {
		if (clone || skb->protocol != bpf_htons(ETH_P_IP))
			return tc_drop(VLNET_DROP_NO_NEIGHBOUR);
		via_kernel = 1;
	} else if (ret) {
		return tc_drop(ret);
	}
	if (bpf_skb_store_bytes(skb, 0, h, sizeof(*h), 0))
		return tc_drop(VLNET_DROP_ENCAP_FAILED);
	stats = peer_stats(vni, dst_be);
	if (stats) {
		stats->tx_packets += skb_segments(skb);
		stats->tx_bytes += inner_len;
	}
	if (clone)
		return bpf_clone_redirect(skb, ifindex, 0) ? tc_drop(VLNET_DROP_NO_ROUTE) : 0;
	if (via_kernel)
		return bpf_redirect_neigh(ifindex, NULL, 0, 0);
	return bpf_redirect(ifindex, 0);
}

SEC("classifier")
int tc_overlay_tx(struct __sk_buff *skb)
{
	__u32 slot = VLNET_CONFIG_SLOT, ifindex = skb->ifindex;
	struct vlnet_fdb_key key = {};
	struct vlnet_node_config *cfg;
	struct vlnet_vni_config *vc;
	struct vlnet_fdb_entry *fdb;
	struct vxlan_encap h = {};
	void *data, *data_end;
	struct ethhdr eth;
	__u32 *vni, inner_len, count;
	__be16 sport;
	__u8 tos;
	int ret;

	cfg = bpf_map_lookup_elem(&vlnet_config, &slot);
	vni = bpf_map_lookup_elem(&vlnet_ports, &ifindex);
	if (!cfg || !vni)
		return tc_drop(VLNET_DROP_NOT_CONFIGURED);
	vc = bpf_map_lookup_elem(&vlnet_vnis, vni);
	if (!vc)
		return tc_drop(VLNET_DROP_NOT_CONFIGURED);

	tc_pull(skb, TX_PULL_LEN);
	data = SKB_DATA(skb);
	data_end = SKB_DATA_END(skb);
	if (data + sizeof(eth) > data_end)
		return tc_drop(VLNET_DROP_TRUNCATED);
	__builtin_memcpy(&eth, data, sizeof(eth));
	tos = inner_tos(data, data_end);
	inner_len = skb->len;
	if (!skb->gso_size && inner_len - ETH_HLEN > cfg->underlay_mtu - VLNET_ENCAP_LEN)
		return tc_drop(VLNET_DROP_MTU_EXCEEDED);

	sport = flow_source_port(cfg, bpf_get_hash_recalc(skb));
	encap_init(&h, cfg, *vni, inner_len, tos, sport);

	if (!(eth.h_dest[0] & 1)) {
		key.vni = *vni;
		__builtin_memcpy(key.mac, eth.h_dest, ETH_ALEN);
		fdb = bpf_map_lookup_elem(&vlnet_fdb, &key);
		if (fdb) {
			__u32 dst_be = fdb->vtep_be;

			ret = encap_grow(skb, &eth);
			if (ret)
				return tc_drop(ret);
			return encap_send(skb, &h, cfg, *vni, dst_be, inner_len, 0);
		}
	}

	/* Broadcast, multicast, unknown unicast: head-end replication. */
	count = vc->flood_count;
	if (!count)
		return tc_drop(VLNET_DROP_NO_PEERS);
	ret = encap_grow(skb, &eth);
	if (ret)
		return tc_drop(ret);
	for (__u32 i = 0; i < VLNET_MAX_FLOOD; i++) {
		if (i >= count)
			break;
		if (i + 1 == count)
			return encap_send(skb, &h, cfg, *vni, vc->flood_be[i], inner_len, 0);
		encap_send(skb, &h, cfg, *vni, vc->flood_be[i], inner_len, 1);
	}
	return TC_ACT_SHOT; /* unreachable: the loop ends in the last send */
}

SEC("xdp")
int xdp_overlay_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
