/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * flows.h - passive per-flow RTT of the inner frames, ePPing's method (see
 * "Per-flow latency" in vlnet_abi.h): every inner frame is counted to its
 * flow; an identifier leaving through the tunnel (tx) is stamped, and the
 * first frame coming back (rx) that echoes it closes one RTT sample.
 *
 * Parsed: inner Ethernet; IPv4 with any IHL (a later fragment has no ports
 * and is not tracked); IPv6's fixed header only, without walking extension
 * headers (a packet with one is counted under its first next-header value,
 * without ports, and never sampled); TCP, UDP, ICMP, ICMPv6.
 *
 * Identifiers, as ePPing takes them:
 * - TCP TSval, stamped on a segment with payload whose TSval is newer than
 *   any the flow sent before; retransmissions and reordered segments carry
 *   an older one, so a sample always runs from the first send. Pure ACKs are
 *   not stamped: the peer may echo their TSval only with its next data,
 *   after its application's think time.
 * - A SYN's sequence number + 1, echoed by the SYN-ACK's acknowledgement
 *   number. The SYN-ACK echoes the SYN's TSval too; it is matched as a SYN
 *   only, so one handshake makes one sample.
 * - An ICMP / ICMPv6 echo request's id and sequence, echoed by its reply.
 *
 * Stamps are rate-limited per flow by vlnet_flow.open_stamp_ns (see
 * VLNET_RTT_STAMP_GAP_NS).
 */
#ifndef VLNET_FLOWS_H
#define VLNET_FLOWS_H

#include "maps.h"

/* Direction of an inner frame: from a local VM into the tunnel, or out of it. */
#define FLOW_TX 0
#define FLOW_RX 1

/*
 * The longest inner headers the parser reads: Ethernet, IPv4 with options
 * (IPv6's fixed header is shorter) and TCP with options. TC callers pull
 * this much into the linear data.
 */
#define FLOW_HDR_LEN (ETH_HLEN + 60 + 60)

#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_TIMESTAMP 8
#define TCPOLEN_TIMESTAMP 10
/* Options looked at before giving up: 40 bytes of option space hold no more
 * than 10 useful ones (NOP padding included on real stacks). */
#define TCP_MAX_OPTIONS 10

#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129

/* Every byte of a key is a field, so equal flows hash equally. */
_Static_assert(sizeof(struct vlnet_flow_key) == 44, "vlnet_flow_key has hidden padding");
_Static_assert(sizeof(struct vlnet_rtt_ident) == 52, "vlnet_rtt_ident has hidden padding");
_Static_assert(sizeof(struct vlnet_flow) == 104, "vlnet_flow has hidden padding");

/* The part of an ICMP or ICMPv6 header an echo request or reply shares. */
struct icmp_echo_hdr {
	__u8 type;
	__u8 code;
	__be16 check;
	__be16 id;
	__be16 seq;
};

/* Where and when an inner frame passes the VTEP. */
struct flow_meta {
	__u64 now_ns;         /* bpf_ktime_get_ns() */
	__u32 vni;
	__u32 remote_vtep_be; /* 0: unknown (tx of a flooded frame) */
	__u32 len;            /* inner frame bytes, Ethernet header included */
	__u32 segs;           /* wire packets it stands for (GSO segments) */
};

/* Template for a new vlnet_rtt_hists entry: 200 bytes the stack can spare. */
static const struct vlnet_rtt_hist rtt_hist_zero;

/**
 * tcp_timestamps() - TSval and TSecr (host order) of the TCP header @tcp,
 * @doff bytes long. Returns 0, or -1 when no timestamp option lies within
 * the header and the linear data.
 */
static __always_inline int tcp_timestamps(struct tcphdr *tcp, __u32 doff, void *data_end,
					  __u32 *tsval, __u32 *tsecr)
{
	__u32 off = sizeof(*tcp);
	__u8 *opt;

	for (int i = 0; i < TCP_MAX_OPTIONS; i++) {
		opt = (__u8 *)tcp + off;
		/* Past here at most a lone EOL or NOP is left. */
		if (off + 2 > doff || (void *)(opt + 2) > data_end)
			return -1;
		if (opt[0] == TCPOPT_EOL)
			return -1;
		if (opt[0] == TCPOPT_NOP) {
			off++;
			continue;
		}
		if (opt[0] == TCPOPT_TIMESTAMP && opt[1] == TCPOLEN_TIMESTAMP) {
			if (off + TCPOLEN_TIMESTAMP > doff ||
			    (void *)(opt + TCPOLEN_TIMESTAMP) > data_end)
				return -1;
			*tsval = bpf_ntohl(*(__be32 *)(opt + 2));
			*tsecr = bpf_ntohl(*(__be32 *)(opt + 6));
			return 0;
		}
		if (opt[1] < 2)
			return -1; /* malformed: the walk would not advance */
		off += opt[1];
	}
	return -1;
}

/**
 * flow_parse_tcp() - ports of @tcp into @id->flow, and the identifier the
 * segment carries into @id->ident/kind (left 0 when none): on tx the one to
 * stamp, on rx the one it echoes.
 * @hdr_len: bytes before @tcp, from the inner Ethernet header.
 * @len: the whole inner frame's bytes.
 *
 * Return: 0, or -1 when the fixed header is cut short.
 */
static __always_inline int flow_parse_tcp(struct tcphdr *tcp, void *data_end, __u32 hdr_len,
					  __u32 len, int dir, struct vlnet_rtt_ident *id)
{
	__u32 doff, tsval, tsecr;

	if ((void *)(tcp + 1) > data_end)
		return -1;
	id->flow.local_port_be = dir == FLOW_TX ? tcp->source : tcp->dest;
	id->flow.remote_port_be = dir == FLOW_TX ? tcp->dest : tcp->source;
	doff = tcp->doff * 4;
	if (doff < sizeof(*tcp))
		return 0;
	if (dir == FLOW_TX) {
		if (tcp->syn && !tcp->ack) {
			id->ident = bpf_ntohl(tcp->seq) + 1;
			id->kind = VLNET_IDENT_TCP_SYN;
		} else if (len > hdr_len + doff &&
			   !tcp_timestamps(tcp, doff, data_end, &tsval, &tsecr)) {
			id->ident = tsval;
			id->kind = VLNET_IDENT_TCP_TSVAL;
		}
	} else if (tcp->syn && tcp->ack) {
		id->ident = bpf_ntohl(tcp->ack_seq);
		id->kind = VLNET_IDENT_TCP_SYN;
	} else if (tcp->ack && !tcp_timestamps(tcp, doff, data_end, &tsval, &tsecr) && tsecr) {
		id->ident = tsecr;
		id->kind = VLNET_IDENT_TCP_TSVAL;
	}
	return 0;
}

/**
 * flow_parse_l4() - ports and identifier of the transport header at @l4
 * (protocol @id->flow.proto), as flow_parse_tcp(). Unknown protocols keep
 * ports 0. Returns 0, or -1 when the header is cut short.
 */
static __always_inline int flow_parse_l4(void *l4, void *data_end, __u32 hdr_len, __u32 len,
					 int dir, struct vlnet_rtt_ident *id)
{
	struct vlnet_flow_key *k = &id->flow;
	int v4 = k->family == VLNET_FAMILY_IPV4;
	__u8 request = v4 ? ICMP_ECHO : ICMPV6_ECHO_REQUEST;
	__u8 reply = v4 ? ICMP_ECHOREPLY : ICMPV6_ECHO_REPLY;
	struct icmp_echo_hdr *icmp = l4;
	struct udphdr *udp = l4;

	if (k->proto == IPPROTO_TCP)
		return flow_parse_tcp(l4, data_end, hdr_len, len, dir, id);
	if (k->proto == IPPROTO_UDP) {
		if ((void *)(udp + 1) > data_end)
			return -1;
		k->local_port_be = dir == FLOW_TX ? udp->source : udp->dest;
		k->remote_port_be = dir == FLOW_TX ? udp->dest : udp->source;
		return 0;
	}
	if (k->proto != (v4 ? IPPROTO_ICMP : IPPROTO_ICMPV6))
		return 0;
	if ((void *)(icmp + 1) > data_end)
		return -1;
	/* Only echoes have an id; other messages share the ports-0 flow. */
	if (icmp->code || (icmp->type != request && icmp->type != reply))
		return 0;
	k->local_port_be = icmp->id;
	k->remote_port_be = icmp->id;
	/* Requests leave, replies come back. */
	if (icmp->type == (dir == FLOW_TX ? request : reply)) {
		id->ident = (__u32)bpf_ntohs(icmp->id) << 16 | bpf_ntohs(icmp->seq);
		id->kind = VLNET_IDENT_ICMP_ECHO;
	}
	return 0;
}

/**
 * flow_parse() - the flow key of the inner frame @eth, normalised so that
 * "local" is the endpoint behind this VTEP, and its identifier, into @id
 * (zeroed but for the VNI by the caller). Returns 0, or -1 for a frame that
 * is not tracked.
 */
static __always_inline int flow_parse(struct ethhdr *eth, void *data_end, __u32 len, int dir,
				      struct vlnet_rtt_ident *id)
{
	struct vlnet_flow_key *k = &id->flow;
	__u32 l3_len;
	void *l4;

	if ((void *)(eth + 1) > data_end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end || ip->ihl < 5)
			return -1;
		if (ip->frag_off & bpf_htons(IP_OFFSET))
			return -1;
		l3_len = ip->ihl * 4;
		k->family = VLNET_FAMILY_IPV4;
		k->proto = ip->protocol;
		__builtin_memcpy(k->local_ip, dir == FLOW_TX ? &ip->saddr : &ip->daddr, 4);
		__builtin_memcpy(k->remote_ip, dir == FLOW_TX ? &ip->daddr : &ip->saddr, 4);
		l4 = (void *)ip + l3_len;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		l3_len = sizeof(*ip6);
		k->family = VLNET_FAMILY_IPV6;
		k->proto = ip6->nexthdr;
		__builtin_memcpy(k->local_ip, dir == FLOW_TX ? &ip6->saddr : &ip6->daddr, 16);
		__builtin_memcpy(k->remote_ip, dir == FLOW_TX ? &ip6->daddr : &ip6->saddr, 16);
		l4 = ip6 + 1;
	} else {
		return -1;
	}
	return flow_parse_l4(l4, data_end, ETH_HLEN + l3_len, len, dir, id);
}

/**
 * flow_hdr_len() - how much of the inner frame at @data the parser reads,
 * from the headers already in the linear data up to @data_end: Ethernet,
 * the IP header (IPv4 with its options) and the transport header (TCP with
 * its options, else 8 bytes). A caller pulls this much, and not more: a
 * TCP segment from a local stack carries its headers in the linear data and
 * its payload in fragments, and pulling payload bytes into the linear data
 * copies them (and the whole head, when the stack still holds a clone for
 * retransmission) on every segment. Headers whose lengths are not linear
 * yet get FLOW_HDR_LEN.
 */
static __always_inline __u32 flow_hdr_len(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct tcphdr *tcp;
	__u32 l3_len;
	__u8 proto;

	if ((void *)(eth + 1) > data_end)
		return FLOW_HDR_LEN;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end)
			return FLOW_HDR_LEN;
		l3_len = ip->ihl * 4;
		proto = ip->protocol;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return FLOW_HDR_LEN;
		l3_len = sizeof(*ip6);
		proto = ip6->nexthdr;
	} else {
		return ETH_HLEN;
	}
	if (l3_len < sizeof(struct iphdr) || l3_len > 60)
		return ETH_HLEN + sizeof(struct iphdr);
	if (proto != IPPROTO_TCP)
		return ETH_HLEN + l3_len + sizeof(struct udphdr);
	tcp = data + ETH_HLEN + l3_len;
	if ((void *)(tcp + 1) > data_end)
		return FLOW_HDR_LEN;
	return ETH_HLEN + l3_len + tcp->doff * 4;
}

/**
 * flow_account() - the entry of flow @key, created by its first frame, with
 * this frame counted; NULL when the map refused it.
 */
static __always_inline struct vlnet_flow *flow_account(const struct vlnet_flow_key *key,
						       const struct flow_meta *m, int dir,
						       const __u8 *local_mac)
{
	struct vlnet_flow *f = bpf_map_lookup_elem(&vlnet_flows, key);

	if (!f) {
		struct vlnet_flow fresh = {
			.first_seen_ns = m->now_ns,
			.remote_vtep_be = m->remote_vtep_be,
		};

		__builtin_memcpy(fresh.local_mac, local_mac, ETH_ALEN);
		/* On a race another CPU's entry wins, and this frame counts there. */
		bpf_map_update_elem(&vlnet_flows, key, &fresh, BPF_NOEXIST);
		f = bpf_map_lookup_elem(&vlnet_flows, key);
		if (!f)
			return NULL;
	}
	f->last_seen_ns = m->now_ns;
	if (dir == FLOW_TX) {
		__sync_fetch_and_add(&f->tx_packets, m->segs);
		__sync_fetch_and_add(&f->tx_bytes, m->len);
	} else {
		__sync_fetch_and_add(&f->rx_packets, m->segs);
		__sync_fetch_and_add(&f->rx_bytes, m->len);
	}
	/* A flooded frame does not know the VTEP: keep the one learned. */
	if (m->remote_vtep_be && f->remote_vtep_be != m->remote_vtep_be)
		f->remote_vtep_be = m->remote_vtep_be;
	return f;
}

/**
 * flow_stamp() - tx: remember when @id left, if it is the first send of a
 * new identifier and the flow's rate limit allows.
 */
static __always_inline void flow_stamp(struct vlnet_flow *f, const struct vlnet_rtt_ident *id,
				       __u64 now)
{
	if (id->kind == VLNET_IDENT_TCP_TSVAL) {
		/* Serial arithmetic: TSvals wrap. Not newer: sent before. */
		if ((f->flags & VLNET_FLOW_HAVE_TSVAL) && (__s32)(id->ident - f->last_tsval) <= 0)
			return;
		f->last_tsval = id->ident;
		if (!(f->flags & VLNET_FLOW_HAVE_TSVAL))
			f->flags |= VLNET_FLOW_HAVE_TSVAL;
	}
	if (f->open_stamp_ns && now - f->open_stamp_ns < VLNET_RTT_STAMP_GAP_NS)
		return;
	/* A SYN or echo request sent again keeps its first stamp. */
	if (!bpf_map_update_elem(&vlnet_flow_stamps, id, &now, BPF_NOEXIST))
		f->open_stamp_ns = now;
}

/**
 * log2_u64() - floor(log2(@v)), 0 for 0; branch-light bit halving, so the
 * verifier sees a few paths rather than a loop.
 */
static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xffffffffULL) << 5;
	v >>= shift;
	r |= shift;
	shift = (v > 0xffff) << 4;
	v >>= shift;
	r |= shift;
	shift = (v > 0xff) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xf) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	return r | (__u32)(v >> 1);
}

/** rtt_hist_add() - count one @rtt_ns sample in (@vni, @vtep_be)'s histogram. */
static __always_inline void rtt_hist_add(__u32 vni, __u32 vtep_be, __u64 rtt_ns)
{
	struct vlnet_peer_key key = { .vni = vni, .vtep_be = vtep_be };
	struct vlnet_rtt_hist *h = bpf_map_lookup_elem(&vlnet_rtt_hists, &key);
	__u32 bucket = log2_u64(rtt_ns / 1000);

	if (!h) {
		bpf_map_update_elem(&vlnet_rtt_hists, &key, &rtt_hist_zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&vlnet_rtt_hists, &key);
		if (!h)
			return;
	}
	if (bucket > VLNET_RTT_BUCKETS - 1)
		bucket = VLNET_RTT_BUCKETS - 1;
	h->count[bucket]++;
	h->sum_ns += rtt_ns;
}

/** flow_sample() - fold one @rtt_ns sample into the flow's figures. */
static __always_inline void flow_sample(struct vlnet_flow *f, __u64 rtt_ns)
{
	__u64 srtt = f->srtt_ns;

	if (!f->rtt_min_ns || rtt_ns < f->rtt_min_ns)
		f->rtt_min_ns = rtt_ns;
	f->rtt_last_ns = rtt_ns;
	/* srtt += (sample - srtt) / 8, rounded towards zero like a signed division. */
	if (!f->rtt_samples)
		srtt = rtt_ns;
	else if (rtt_ns >= srtt)
		srtt += (rtt_ns - srtt) / 8;
	else
		srtt -= (srtt - rtt_ns) / 8;
	f->srtt_ns = srtt;
	__sync_fetch_and_add(&f->rtt_samples, 1);
}

/**
 * flow_echo() - rx: @id echoes an identifier; if it was stamped, the first
 * echo takes the stamp and closes a sample.
 */
static __always_inline void flow_echo(struct vlnet_flow *f, const struct vlnet_rtt_ident *id,
				      const struct flow_meta *m)
{
	__u64 *stamp, sent, rtt;

	/*
	 * No stamp open: nothing this flow sent awaits its echo (an older stamp
	 * left behind is older than the last one echoed, and TCP echoes only
	 * newer ones), so most frames skip the lookup: a receiver's data, a
	 * sender's ACKs between samples.
	 */
	if (!f->open_stamp_ns)
		return;
	stamp = bpf_map_lookup_elem(&vlnet_flow_stamps, id);
	if (!stamp)
		return;
	sent = *stamp;
	if (bpf_map_delete_elem(&vlnet_flow_stamps, id))
		return; /* another CPU's echo took it */
	if (f->open_stamp_ns == sent)
		f->open_stamp_ns = 0;
	rtt = m->now_ns - sent;
	if (rtt > VLNET_RTT_MAX_AGE_NS)
		return;
	flow_sample(f, rtt);
	rtt_hist_add(m->vni, m->remote_vtep_be, rtt);
}

/* One direction's tracking; @dir is a constant at each call. */
static __always_inline void flow_track(struct ethhdr *eth, void *data_end,
				       const struct flow_meta *m, int dir)
{
	struct vlnet_rtt_ident id = { .flow.vni = m->vni };
	struct vlnet_flow *f;

	if (flow_parse(eth, data_end, m->len, dir, &id))
		return;
	f = flow_account(&id.flow, m, dir, dir == FLOW_TX ? eth->h_source : eth->h_dest);
	if (!f || !id.kind)
		return;
	if (dir == FLOW_TX)
		flow_stamp(f, &id, m->now_ns);
	else
		flow_echo(f, &id, m);
}

/*
 * The entry points are BPF functions of their own, not inlined: the verifier
 * then walks the header parsing's paths once per call, and not again for
 * every path of the caller that follows.
 */

/**
 * flow_track_tx() - a frame from a local VM enters the tunnel.
 * @eth: its Ethernet header; @data_end: the end of the linear data.
 */
static __noinline void flow_track_tx(struct ethhdr *eth, void *data_end, const struct flow_meta *m)
{
	flow_track(eth, data_end, m, FLOW_TX);
}

/** flow_track_rx() - a decapsulated frame goes to a local VM; as flow_track_tx(). */
static __noinline void flow_track_rx(struct ethhdr *eth, void *data_end, const struct flow_meta *m)
{
	flow_track(eth, data_end, m, FLOW_RX);
}

#endif
