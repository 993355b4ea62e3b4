/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* common.h - kernel types, libbpf helpers, protocol constants. */
#ifndef VLNET_COMMON_H
#define VLNET_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "vlnet_abi.h"

/* Macros that BTF cannot carry. */
#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_ARP 0x0806
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
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
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

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
