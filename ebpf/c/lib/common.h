/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* common.h - kernel UAPI types, libbpf helpers, protocol constants.
 *
 * The programs use only the kernel's UAPI (no CO-RE, no kernel-internal
 * types), so they build against linux-libc-dev's headers, as Cilium's do:
 * the object does not depend on the build machine's running kernel. */
#ifndef VLNET_COMMON_H
#define VLNET_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "vlnet_abi.h"

/* Constants from kernel-internal headers (net/ip.h, net/inet_ecn.h,
 * linux/socket.h) and from linux/icmp.h, which pulls in libc's headers. */
#define AF_INET 2
#define IP_MF 0x2000
#define IP_DF 0x4000
#define IP_OFFSET 0x1fff
#define INET_ECN_MASK 3
#define INET_ECN_NOT_ECT 0
#define INET_ECN_ECT_1 1
#define INET_ECN_ECT_0 2
#define INET_ECN_CE 3
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11

/* bpf_skb_adjust_room() flags of Linux 6.3's UAPI, newer than Debian 12's
 * linux-libc-dev (6.1); their values are kernel ABI and never change. */
#define VLNET_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define VLNET_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)

/* VXLAN header flags word: only the I flag may be set (RFC 7348 section 5). */
#define VXLAN_FLAG_I 0x08000000

/* Minimal timestamp refresh interval for a learned FDB entry (1 s). */
#define FDB_REFRESH_NS 1000000000ULL

/* VXLAN header (RFC 7348 section 5). */
struct vxlan_hdr {
	__be32 flags;
	__be32 vni; /* VNI << 8, low byte reserved */
};

/* Outer headers vlnet prepends, in wire order. */
struct vxlan_encap {
	struct ethhdr eth;
	struct iphdr ip;
	struct udphdr udp;
	struct vxlan_hdr vx;
} __attribute__((packed));

_Static_assert(sizeof(struct vxlan_encap) == VLNET_ENCAP_LEN, "encap header size");

#endif
