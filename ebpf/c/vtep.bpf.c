/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * vtep.bpf.c - vlnet's VXLAN tunnel endpoint (RFC 7348).
 *
 * Entry points, by hook:
 *   xdp_underlay_rx   XDP on the underlay: validate, learn, snoop a static
 *                     peer's ARP/ND (lib/neigh.h), decap, redirect
 *                     into the VNI's overlay port (DEVMAP), or known
 *                     unicast IP straight into a bypass port that takes
 *                     XDP frames (lib/bypass.h); on a gateway it
 *                     passes the frames to relay to tc_underlay_rx.
 *   tc_underlay_rx    the same at TC ingress (keeps GSO/GRO; default on veth);
 *                     on a gateway (VLNET_CFG_RELAY) it relays between static
 *                     peers and members first (lib/relay.h).
 *   tc_tunnel_rx      the same at TC ingress of an L3 tunnel (WireGuard TUN):
 *                     bare IPv4 in, a MAC header pushed, then tc_underlay_rx's
 *                     path; anything but VXLAN for us goes through the host
 *                     filter (lib/tunnel_filter.h).
 *   tc_overlay_tx     TC ingress on vlnet's end of an overlay port: FDB lookup,
 *                     encap, unicast or head-end replication (lib/flood.h) to
 *                     the underlay (or to an L3 tunnel, see hairpin_out()); a
 *                     broadcast's source is recorded as living here
 *                     (vlnet_locals); ARP/ND of local VMs is snooped and
 *                     requests for known bindings answered here
 *                     (lib/neigh.h).
 *   tc_vm_tx          TC ingress on a VM's port of a VNI with the bridge
 *                     bypass: a known unicast IP frame for a remote MAC is
 *                     encapsulated right there, as tc_overlay_tx would; the
 *                     rest goes on to the bridge (lib/bypass.h). TC decap
 *                     delivers known unicast IP for such a VM straight to it.
 *   xdp_overlay_pass  XDP on the bridge's end of an overlay port in XDP mode:
 *                     a veth delivers XDP redirects only to a peer with XDP.
 *
 * With VLNET_CFG_FLOW_TRACKING, the decap paths and tc_overlay_tx also count
 * each inner frame to its flow and time its RTT (lib/flows.h).
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/bypass.h"
#include "lib/drop.h"
#include "lib/decap.h"
#include "lib/encap.h"
#include "lib/flood.h"
#include "lib/flows.h"
#include "lib/neigh.h"
#include "lib/relay.h"
#include "lib/skb.h"
#include "lib/tunnel_filter.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Longest span of a received packet that rx_hdr_len() asks for. */
#define RX_PULL_MAX (MAX_OUTER_LEN + FLOW_HDR_LEN)
/* Inner Ethernet plus an inner IPv6 header and an ICMPv6 type. */
#define TX_PULL_LEN (ETH_HLEN + 40 + 1)

/* The node-wide settings, or NULL before the daemon wrote them. */
static __always_inline struct vlnet_node_config *node_config(void)
{
	__u32 slot = VLNET_CONFIG_SLOT;

	return bpf_map_lookup_elem(&vlnet_config, &slot);
}

/* Whether inner flows are tracked (lib/flows.h). */
static __always_inline int tracking_flows(const struct vlnet_node_config *cfg)
{
	return cfg && (cfg->flags & VLNET_CFG_FLOW_TRACKING);
}

/*
 * Flow tracking of a decapsulated frame, before it leaves for the overlay
 * port: @inner is its Ethernet header, @segs the wire packets it stands for.
 */
static __always_inline void track_rx(const struct decap_info *di, struct ethhdr *inner,
				     void *data_end, __u32 segs)
{
	struct flow_meta m = {
		.now_ns = di->now_ns,
		.vni = di->vni,
		.remote_vtep_be = di->src_vtep_be,
		.len = di->inner_len,
		.segs = segs,
	};

	flow_track_rx(inner, data_end, &m);
}

/*
 * Bytes of the inner frame at @inner (linear up to @data_end) that decap
 * reads: an ARP message or ICMPv6 packet as neigh_rx() reads it, else the
 * headers flow tracking and the bypass read (flow_hdr_len()).
 */
static __always_inline __u32 inner_hdr_len(struct ethhdr *inner, void *data_end)
{
	struct ipv6hdr *ip6 = (void *)(inner + 1);

	if ((void *)(inner + 1) > data_end)
		return FLOW_HDR_LEN;
	if (inner->h_proto == bpf_htons(ETH_P_ARP))
		return ETH_HLEN + NEIGH_RX_LEN;
	if (inner->h_proto == bpf_htons(ETH_P_IPV6)) {
		if ((void *)(ip6 + 1) > data_end)
			return FLOW_HDR_LEN;
		if (ip6->nexthdr == IPPROTO_ICMPV6)
			return ETH_HLEN + NEIGH_RX_LEN;
	}
	return flow_hdr_len(inner, data_end);
}

/*
 * How much of a received packet (@l2_len as for decap_classify()) the TC
 * programs read, from the headers already in its linear data: the outer
 * IPv4 header and a transport header after it (all tunnel_filter() reads
 * of a packet that is not VXLAN), and of VXLAN (UDP to the VXLAN port) the
 * outer headers and the inner frame's (inner_hdr_len()). A caller pulls this much and not more:
 * a GSO packet from a local stack (a veth underlay, a TUN) carries exactly
 * its headers in the linear data, and pulling past them copies payload,
 * and the head of a clone that TCP keeps for retransmission, on every
 * packet. Lengths not linear yet count at their longest.
 */
static __always_inline __u32 rx_hdr_len(void *data, void *data_end, __u32 l2_len)
{
	struct iphdr *ip = data + l2_len;
	struct udphdr *udp;
	__u32 outer;

	if ((void *)(ip + 1) > data_end)
		return RX_PULL_MAX;
	outer = ip->ihl * 4;
	if (outer < sizeof(*ip) || outer > 60)
		return l2_len + sizeof(*ip);
	outer += l2_len;
	if (ip->protocol != IPPROTO_UDP)
		return outer + sizeof(struct tcphdr);
	udp = data + outer;
	if ((void *)(udp + 1) > data_end)
		return RX_PULL_MAX;
	/* Other UDP (WireGuard's, say): its payload is nobody's business here. */
	if (udp->dest != bpf_htons(VLNET_VXLAN_PORT))
		return outer + sizeof(*udp);
	outer += sizeof(*udp) + sizeof(struct vxlan_hdr);
	if (data + outer > data_end)
		return RX_PULL_MAX;
	return outer + inner_hdr_len(data + outer, data_end);
}

SEC("xdp")
int xdp_underlay_rx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct vlnet_node_config *cfg = node_config();
	struct vlnet_bypass_port *bp;
	struct relay_plan plan = {};
	__u32 vm_port = 0;
	struct decap_info di = {};
	struct ethhdr *inner;
	int ret;

	ret = decap_classify(data, data_end, data_end - data, 0, ETH_HLEN,
			     cfg ? cfg->local_vtep_be : 0, VLNET_PATH_UNDERLAY, &di);
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
	if (relaying(cfg)) {
		ret = relay_decide(&di, inner, &plan);
		if (ret)
			goto drop;
		/* Relayed at TC (tc_underlay_rx runs beside XDP on a gateway). */
		if (plan.kind == RELAY_UNICAST || plan.kind == RELAY_FLOOD)
			return XDP_PASS;
	}
	ret = decap_prepare(&di, inner, data_end, 1);
	if (ret)
		goto drop;
	neigh_rx(&di, inner, data_end);
	if (plan.kind == RELAY_REFUSED)
		count_drop(VLNET_DROP_RELAY_NOT_OWNED);
	if (tracking_flows(cfg))
		track_rx(&di, inner, data_end, 1);
	if ((di.vni_flags & VLNET_VNI_BYPASS) && bypass_kind_ok(inner, inner + 1, data_end)) {
		bp = bypass_port(di.vni, inner->h_dest);
		if (bp && (bp->flags & VLNET_BYPASS_XDP))
			vm_port = bp->ifindex;
	}
	ret = VLNET_DROP_DECAP_FAILED;
	if (bpf_xdp_adjust_head(ctx, di.outer_len))
		goto drop;
	if (vm_port)
		return bypass_deliver_xdp(vm_port);
	/* A port missing from the DEVMAP makes the redirect answer XDP_DROP. */
	if (bpf_redirect_map(&vlnet_xdp_ports, di.overlay_ifindex, XDP_DROP) == XDP_REDIRECT)
		return XDP_REDIRECT;
	ret = VLNET_DROP_NOT_CONFIGURED;
drop:
	count_drop(ret);
	return XDP_DROP;
}

/*
 * The TC decap of a classified packet whose outer headers, Ethernet included,
 * are the first @di->outer_len bytes: on a gateway the relay (lib/relay.h),
 * then ECN, learning, counters, zone snooping (lib/neigh.h), flow tracking,
 * strip, and redirect into the overlay port, or straight to the VM's port
 * when the frame may take the bridge bypass (lib/bypass.h). Returns a TC
 * action.
 */
static __always_inline int tc_decap(struct __sk_buff *skb, struct decap_info *di,
				    const struct vlnet_node_config *cfg)
{
	struct relay_plan plan = { .kind = RELAY_NONE };
	struct vlnet_bypass_port *bp;
	__u32 segs = skb_segments(skb);
	int track = tracking_flows(cfg);
	struct ethhdr *inner, eth;
	void *data, *data_end;
	__u64 flags;
	int ret;

	/* The caller pulled rx_hdr_len(): what follows reads no further. */
	data = SKB_DATA(skb);
	data_end = SKB_DATA_END(skb);
	/*
	 * Checked right before the addition: clang reloads di->outer_len from
	 * the stack after a call, and the verifier keeps no bounds there.
	 */
	if (di->outer_len > MAX_OUTER_LEN)
		return tc_drop(VLNET_DROP_TRUNCATED);
	inner = data + di->outer_len;
	if ((void *)(inner + 1) > data_end)
		return tc_drop(VLNET_DROP_TRUNCATED);
	if (relaying(cfg)) {
		ret = relay_decide(di, inner, &plan);
		if (ret)
			return tc_drop(ret);
	}
	ret = decap_prepare(di, inner, data_end, segs);
	if (ret)
		return tc_drop(ret);
	neigh_rx(di, inner, data_end);
	if (plan.kind == RELAY_REFUSED)
		count_drop(VLNET_DROP_RELAY_NOT_OWNED);
	/* Relayed frames pass no local endpoint: not tracked as flows here. */
	if (plan.kind == RELAY_UNICAST)
		return relay(skb, di, cfg, &plan, inner_tos(inner, data_end), segs);
	if (track)
		track_rx(di, inner, data_end, segs);

	__builtin_memcpy(&eth, inner, sizeof(eth));
	bp = NULL;
	if (plan.kind == RELAY_FLOOD)
		relay(skb, di, cfg, &plan, inner_tos(inner, data_end), segs);
	else if ((di->vni_flags & VLNET_VNI_BYPASS) && bypass_kind_ok(&eth, inner + 1, data_end))
		bp = bypass_port(di->vni, eth.h_dest);
	flags = BPF_F_ADJ_ROOM_FIXED_GSO;
	if (eth.h_proto == bpf_htons(ETH_P_IPV6))
		flags |= VLNET_ADJ_ROOM_DECAP_L3_IPV6;
	else if (eth.h_proto == bpf_htons(ETH_P_IP))
		flags |= VLNET_ADJ_ROOM_DECAP_L3_IPV4;
	if (di->outer_len > MAX_OUTER_LEN ||
	    bpf_skb_adjust_room(skb, -(__s32)di->outer_len, BPF_ADJ_ROOM_MAC, flags) ||
	    bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0))
		return tc_drop(VLNET_DROP_DECAP_FAILED);
	if (bp)
		return bypass_deliver(bp, segs);
	return bpf_redirect(di->overlay_ifindex, 0);
}

SEC("classifier")
int tc_underlay_rx(struct __sk_buff *skb)
{
	struct vlnet_node_config *cfg = node_config();
	struct decap_info di = {};
	int ret;

	tc_pull(skb, rx_hdr_len(SKB_DATA(skb), SKB_DATA_END(skb), ETH_HLEN));
	ret = decap_classify(SKB_DATA(skb), SKB_DATA_END(skb), CTX_READ(skb, len),
			     CTX_READ(skb, gso_size) != 0, ETH_HLEN,
			     cfg ? cfg->local_vtep_be : 0, VLNET_PATH_UNDERLAY, &di);
	if (ret == DECAP_NOT_OURS)
		return TC_ACT_OK;
	if (ret)
		return tc_drop(ret);
	return tc_decap(skb, &di, cfg);
}

SEC("classifier")
int tc_tunnel_rx(struct __sk_buff *skb)
{
	__u32 ifindex = CTX_READ(skb, ifindex), *local;
	__be16 proto = bpf_htons(ETH_P_IP);
	struct decap_info di = {};
	int ret;

	local = bpf_map_lookup_elem(&vlnet_tunnels, &ifindex);
	if (!local)
		return TC_ACT_OK;
	tc_pull(skb, rx_hdr_len(SKB_DATA(skb), SKB_DATA_END(skb), 0));
	ret = decap_classify(SKB_DATA(skb), SKB_DATA_END(skb), CTX_READ(skb, len),
			     CTX_READ(skb, gso_size) != 0, 0, *local, VLNET_PATH_TUNNEL, &di);
	if (ret == DECAP_NOT_OURS) {
		ret = tunnel_filter(SKB_DATA(skb), SKB_DATA_END(skb), *local);
		if (!ret)
			return TC_ACT_OK;
	}
	if (ret)
		return tc_drop(ret);
	/*
	 * Made for this case: an L3 skb gets a MAC header (mac_len reset to
	 * it) before going to an L2 device. Its addresses stay zero; decap
	 * strips it with the rest of the outer headers.
	 */
	if (bpf_skb_change_head(skb, ETH_HLEN, 0) ||
	    bpf_skb_store_bytes(skb, __builtin_offsetof(struct ethhdr, h_proto), &proto,
				sizeof(proto), 0))
		return tc_drop(VLNET_DROP_DECAP_FAILED);
	di.outer_len += ETH_HLEN;
	return tc_decap(skb, &di, node_config());
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

/* hairpin_out() result: not a hairpinned packet after all. */
#define HAIRPIN_NOT_OURS (-1)

/*
 * Second pass of a non-IP frame encapsulated for an L3 next hop (a WireGuard
 * TUN). bpf_skb_change_head() leaves the network header where the inner frame
 * began, and a redirect to a device without MAC header strips everything up
 * to it, so encap_send() redirects the packet, marked VLNET_MARK_HAIRPIN, into
 * the ingress of its own overlay port instead. There the kernel parses it
 * afresh as the IPv4 packet it now is (network header after the outer
 * Ethernet) and this program sends it on; a veth in the same namespace keeps
 * the mark. Returns a TC action, or HAIRPIN_NOT_OURS (mark cleared) for a
 * frame that only carried the mark.
 */
static __always_inline int hairpin_out(struct __sk_buff *skb)
{
	struct vlnet_nexthop *nh;
	struct udphdr *udp;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 dst_be;

	skb->mark = 0;
	tc_pull(skb, VLNET_ENCAP_LEN);
	eth = SKB_DATA(skb);
	ip = (void *)(eth + 1);
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > SKB_DATA_END(skb) || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    udp->dest != bpf_htons(VLNET_VXLAN_PORT))
		return HAIRPIN_NOT_OURS;
	dst_be = ip->daddr;
	nh = bpf_map_lookup_elem(&vlnet_nexthops, &dst_be);
	/* The next hop changed between the two passes. */
	if (!nh || !nh->ifindex || !(nh->flags & VLNET_NH_L3))
		return tc_drop(VLNET_DROP_NO_ROUTE);
	return bpf_redirect(nh->ifindex, 0);
}

/*
 * A frame from @mac entered the overlay port, so @mac lives behind this node:
 * an entry placing it behind a remote VTEP is stale (the VM migrated here) and
 * goes, unless pinned in the config. Its announce, flooded next, moves it on
 * every other VTEP.
 */
static __always_inline void claim_local(__u32 vni, const __u8 *mac)
{
	struct vlnet_fdb_key key = { .vni = vni };
	struct vlnet_fdb_entry *old;

	__builtin_memcpy(key.mac, mac, ETH_ALEN);
	old = bpf_map_lookup_elem(&vlnet_fdb, &key);
	if (!old || (old->flags & VLNET_FDB_STATIC))
		return;
	report_move(vni, mac, old->vtep_be, 0, VLNET_MOVE_LOCAL);
	bpf_map_delete_elem(&vlnet_fdb, &key);
	await_arrival(&key);
}

/*
 * A broadcast or multicast frame from @mac entered the overlay port (a new
 * VM's first frames are ARP or DHCP, a migrated one's its announce): @mac
 * lives behind this node, and a member's frame may not carry it from now on,
 * before the daemon's next read of the bridges, which a new record asks for
 * at once (it advertises the MAC). An existing record keeps its time.
 */
static __always_inline void record_local(__u32 vni, const __u8 *mac)
{
	struct vlnet_fdb_key key = { .vni = vni };
	__u64 now;

	__builtin_memcpy(key.mac, mac, ETH_ALEN);
	if (bpf_map_lookup_elem(&vlnet_locals, &key))
		return;
	now = bpf_ktime_get_ns();
	if (!bpf_map_update_elem(&vlnet_locals, &key, &now, BPF_NOEXIST))
		report_move(vni, mac, 0, 0, VLNET_MOVE_ARRIVED);
}

/*
 * Flow tracking of a frame from a local VM about to be encapsulated for
 * @remote_vtep_be (0 when flooded); @data is its Ethernet header.
 */
static __always_inline void track_tx(struct __sk_buff *skb, void *data, void *data_end,
				     __u32 vni, __u32 remote_vtep_be, __u32 len)
{
	struct flow_meta m = {
		.now_ns = bpf_ktime_get_ns(),
		.vni = vni,
		.remote_vtep_be = remote_vtep_be,
		.len = len,
		.segs = skb_segments(skb),
	};

	flow_track_tx(data, data_end, &m);
}

/*
 * Encapsulates the frame in @skb (@eth: a copy of its Ethernet header) on
 * @vni and sends it to @dst_be, or with @dst_be 0 replicates it to the VNI's
 * @flood_count flood slots: the MTU check, outer headers, flow tracking
 * (@track) and counters that tc_overlay_tx and tc_vm_tx share. Returns a TC
 * action.
 */
static __always_inline int encap_out(struct __sk_buff *skb, const struct vlnet_node_config *cfg,
				     __u32 vni, struct ethhdr *eth, __u32 dst_be,
				     __u32 flood_count, int track)
{
	struct encap_ctx e = { .relay_dir = VLNET_RELAY_DIRECTIONS };
	void *data = SKB_DATA(skb);
	void *data_end = SKB_DATA_END(skb);
	__u32 inner_len = skb->len;
	__be16 sport;
	__u8 tos;
	int ret;

	if (data + ETH_HLEN > data_end)
		return tc_drop(VLNET_DROP_TRUNCATED);
	tos = inner_tos(data, data_end);
	if (!skb->gso_size && inner_len - ETH_HLEN > cfg->underlay_mtu - VLNET_ENCAP_LEN)
		return tc_drop(VLNET_DROP_MTU_EXCEEDED);

	sport = flow_source_port(cfg, bpf_get_hash_recalc(skb));
	encap_init(&e.h, cfg, vni, inner_len, tos, sport);
	e.cfg = cfg;
	e.vni = vni;
	e.inner_len = inner_len;
	e.segs = skb_segments(skb);
	if (track)
		track_tx(skb, data, data_end, vni, dst_be, inner_len);

	ret = encap_grow(skb, eth);
	if (ret)
		return tc_drop(ret);
	if (dst_be)
		return encap_send(skb, &e, dst_be, 0);
	return flood_range(skb, &e, 0, flood_count, 0);
}

SEC("classifier")
int tc_overlay_tx(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct vlnet_fdb_key key = {};
	struct vlnet_node_config *cfg;
	struct vlnet_vni_config *vc;
	struct vlnet_fdb_entry *fdb;
	void *data, *data_end;
	struct ethhdr eth;
	__u32 *vni, dst_be = 0;
	int ret, track;

	if (skb->mark == VLNET_MARK_HAIRPIN) {
		ret = hairpin_out(skb);
		if (ret != HAIRPIN_NOT_OURS)
			return ret;
	}
	cfg = node_config();
	vni = bpf_map_lookup_elem(&vlnet_ports, &ifindex);
	if (!cfg || !vni)
		return tc_drop(VLNET_DROP_NOT_CONFIGURED);
	vc = bpf_map_lookup_elem(&vlnet_vnis, vni);
	if (!vc)
		return tc_drop(VLNET_DROP_NOT_CONFIGURED);

	track = tracking_flows(cfg);
	tc_pull(skb, TX_PULL_LEN);
	if (track)
		tc_pull(skb, flow_hdr_len(SKB_DATA(skb), SKB_DATA_END(skb)));
	data = SKB_DATA(skb);
	data_end = SKB_DATA_END(skb);
	if (data + sizeof(eth) > data_end)
		return tc_drop(VLNET_DROP_TRUNCATED);
	__builtin_memcpy(&eth, data, sizeof(eth));
	claim_local(*vni, eth.h_source);
	if (eth.h_dest[0] & 1)
		record_local(*vni, eth.h_source);
	ret = neigh_tx(skb, *vni, &eth, vc->flags & VLNET_VNI_ARP_SUPPRESS);
	if (ret != NEIGH_CONTINUE)
		return ret;

	fdb = NULL;
	if (!(eth.h_dest[0] & 1)) {
		key.vni = *vni;
		__builtin_memcpy(key.mac, eth.h_dest, ETH_ALEN);
		fdb = bpf_map_lookup_elem(&vlnet_fdb, &key);
		if (fdb)
			dst_be = fdb->vtep_be;
	}
	/* Broadcast, multicast, unknown unicast: head-end replication. */
	if (!fdb && !vc->flood_count)
		return tc_drop(VLNET_DROP_NO_PEERS);
	return encap_out(skb, cfg, *vni, &eth, dst_be, vc->flood_count, track);
}

/*
 * A frame entering a VM's port on a VNI with the bridge bypass (see
 * lib/bypass.h): a unicast IP frame from the MAC that lives on this very
 * port, for a MAC known behind a remote VTEP, is encapsulated here and sent,
 * as tc_overlay_tx would send it after the bridge. Everything else goes on to
 * the bridge untouched. The first pass of a hairpinned frame (see
 * hairpin_out()) returns here too.
 */
SEC("classifier")
int tc_vm_tx(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex, *vni, dst_be, segs;
	struct vlnet_fdb_key key = {};
	struct vlnet_bypass_port *src;
	struct vlnet_node_config *cfg;
	struct vlnet_fdb_entry *fdb;
	void *data, *data_end;
	struct ethhdr eth;
	int ret, track;

	if (skb->mark == VLNET_MARK_HAIRPIN) {
		ret = hairpin_out(skb);
		if (ret != HAIRPIN_NOT_OURS)
			return ret;
	}
	cfg = node_config();
	vni = bpf_map_lookup_elem(&vlnet_vm_ports, &ifindex);
	if (!cfg || !vni)
		return TC_ACT_OK;
	track = tracking_flows(cfg);
	tc_pull(skb, TX_PULL_LEN);
	if (track)
		tc_pull(skb, flow_hdr_len(SKB_DATA(skb), SKB_DATA_END(skb)));
	data = SKB_DATA(skb);
	data_end = SKB_DATA_END(skb);
	if (data + sizeof(eth) > data_end)
		return TC_ACT_OK;
	__builtin_memcpy(&eth, data, sizeof(eth));
	if (!bypass_kind_ok(&eth, data + sizeof(eth), data_end))
		return TC_ACT_OK;
	src = bypass_port(*vni, eth.h_source);
	if (!src || src->ifindex != ifindex)
		return TC_ACT_OK;
	key.vni = *vni;
	__builtin_memcpy(key.mac, eth.h_dest, ETH_ALEN);
	fdb = bpf_map_lookup_elem(&vlnet_fdb, &key);
	if (!fdb)
		return TC_ACT_OK;
	dst_be = fdb->vtep_be;
	bypass_seen(src, bpf_ktime_get_ns());
	segs = skb_segments(skb);
	ret = encap_out(skb, cfg, *vni, &eth, dst_be, 0, track);
	if (ret == TC_ACT_REDIRECT)
		count_bypass(VLNET_BYPASS_TX, segs);
	return ret;
}

SEC("xdp")
int xdp_overlay_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
