/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * vlnet_abi.h - every type, constant and drop reason shared between vlnet's
 * kernel programs and user space. This header is the single source of truth:
 * the Rust side is generated from it by bindgen (ebpf/build.rs).
 *
 * Rules: fixed-width kernel types only, explicit padding, no bool. Addresses
 * and ports are stored in network byte order and named *_be.
 */
#ifndef VLNET_ABI_H
#define VLNET_ABI_H

/*
 * Layout of the pinned maps (their types and sizes below, and what their
 * fields mean). A daemon adopts only pins of its own layout (recorded as
 * <pin dir>/layout-<N>), so an upgrade swaps the programs in place and keeps
 * every map; bump this with any change to a map or a struct in it, and an
 * upgrade across the change is refused with what to do (dataplane/src/bpf/
 * layout.rs also compares each pinned map's type and sizes with the object).
 */
#define VLNET_MAP_LAYOUT 2

/* IANA-assigned VXLAN UDP port (RFC 7348 section 5). */
#define VLNET_VXLAN_PORT 4789
/* Outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8). */
#define VLNET_ENCAP_LEN 50
/* Most remote VTEPs one VNI replicates broadcast/unknown frames to. */
#define VLNET_MAX_FLOOD 4096
/* Entries of vlnet_flood: the flood lists of every VNI together. */
#define VLNET_FLOOD_SLOTS 65536
/* Single slot of the vlnet_config array. */
#define VLNET_CONFIG_SLOT 0
/* Largest VNI (24 bits). */
#define VLNET_MAX_VNI 0xffffff
/* Entries of vlnet_fdb, shared by every VNI (each VNI's share is capped by config). */
#define VLNET_FDB_MAX 131072
/* Entries of vlnet_vteps: remote VTEPs bound to a path. */
#define VLNET_VTEPS_MAX 16384
/* Entries of vlnet_locals: MACs living behind this node. */
#define VLNET_LOCALS_MAX 16384
/* Entries of vlnet_neigh: IP -> MAC bindings of every VNI together (lib/neigh.h). */
#define VLNET_NEIGH_MAX 65536
/* Entries of vlnet_bypass: local VMs' MACs on bridge-bypass ports (as vlnet_locals). */
#define VLNET_BYPASS_MAX 16384
/* Entries of vlnet_vm_ports: VM ports tc_vm_tx runs on. */
#define VLNET_VM_PORTS_MAX 4096
/* Entries of vlnet_open_ports: host ports members may reach through the tunnel. */
#define VLNET_OPEN_PORTS_MAX 1024
/*
 * skb->mark of an encapsulated non-IP frame bound for an L3 next hop, sent
 * back into its overlay port's ingress so that the kernel re-parses it as
 * IPv4 (see tc_overlay_tx). Reserved: nothing else may use this mark.
 */
#define VLNET_MARK_HAIRPIN 0x766c6e01

/* vlnet_fdb_entry.flags */
#define VLNET_FDB_STATIC 1  /* from config or control plane; never learned over */
#define VLNET_FDB_LEARNED 2 /* learned from a decapsulated frame; ages out */
#define VLNET_FDB_CONTROL 4 /* from the control plane; never ages, but a frame
			     * from another VTEP moves it (becomes LEARNED) */

/* vlnet_nexthop.flags */
#define VLNET_NH_L3 1 /* egress is an L3 device (e.g. a WireGuard TUN): no
		       * MACs; non-IP frames take the hairpin */

/*
 * Why a packet was dropped. Codes never change meaning: a retired reason stays
 * reserved. User space exports each as vlnet_drops_total{reason="<lower-case
 * name without prefix>"}.
 */
enum vlnet_drop_reason {
	VLNET_DROP_NONE = 0,              /* reserved: not a drop */
	VLNET_DROP_TRUNCATED = 1,         /* frame shorter than its headers */
	VLNET_DROP_BAD_LENGTH = 2,        /* IPv4/UDP length field disagrees with the frame */
	VLNET_DROP_BAD_IP_HEADER = 3,     /* outer IPv4 version/IHL/checksum wrong */
	VLNET_DROP_FRAGMENT = 4,          /* fragmented VXLAN packet (VTEPs must not fragment) */
	VLNET_DROP_BAD_VXLAN_FLAGS = 5,   /* I flag clear or reserved bits set (RFC 7348 5) */
	VLNET_DROP_UNKNOWN_VNI = 6,       /* VNI not configured on this node */
	VLNET_DROP_UNKNOWN_VTEP = 7,      /* source VTEP not in the VNI's peer set */
	VLNET_DROP_BAD_INNER_SOURCE = 8,  /* inner source MAC multicast or zero */
	VLNET_DROP_ECN_NOT_ECT = 9,       /* outer CE over a Not-ECT inner packet (RFC 6040) */
	VLNET_DROP_MTU_EXCEEDED = 10,     /* inner frame does not fit the underlay MTU */
	VLNET_DROP_NO_PEERS = 11,         /* flood frame on a VNI without remote VTEPs */
	VLNET_DROP_NO_ROUTE = 12,         /* no underlay route to the remote VTEP */
	VLNET_DROP_NO_NEIGHBOUR = 13,     /* next hop's MAC unresolved for a non-IP frame */
	VLNET_DROP_ENCAP_FAILED = 14,     /* the kernel refused to grow the packet */
	VLNET_DROP_DECAP_FAILED = 15,     /* the kernel refused to shrink the packet */
	VLNET_DROP_NOT_CONFIGURED = 16,   /* node config or overlay port missing */
	VLNET_DROP_LOOPED = 17,           /* VXLAN from our own VTEP address */
	VLNET_DROP_WRONG_PATH = 18,       /* VXLAN from a VTEP on a path it is not bound to: a
					   * member's tunnel address on the underlay, a static
					   * peer through the tunnel */
	VLNET_DROP_SOURCE_NOT_OWNED = 19, /* inner source MAC held by another VTEP or living on
					   * this node, in a frame from a VTEP that may not move
					   * MACs (a member) */
	VLNET_DROP_TUNNEL_FILTERED = 20,  /* a packet from the tunnel that is not VXLAN for us
					   * and not for a host port open to members */
	VLNET_DROP_RELAY_NOT_OWNED = 21,  /* a member's frame to relay to static peers whose
					   * inner source MAC the control plane has not placed
					   * behind that member (a flood is still delivered
					   * here; only its relayed copies are dropped) */
	VLNET_DROP__MAX = 22,             /* number of codes; not a reason */
};

/* vlnet_config[VLNET_CONFIG_SLOT]: node-wide settings written by the daemon. */
struct vlnet_node_config {
	__u32 underlay_ifindex; /* interface carrying VXLAN */
	__u32 local_vtep_be;    /* our VTEP address */
	__u32 underlay_mtu;     /* L3 MTU of the underlay */
	__u32 inherit_dscp;     /* 1: outer DSCP copied from the inner packet */
	__u8 ttl;               /* outer TTL */
	__u8 tos;               /* outer DSCP << 2 when not inherited */
	__u16 sport_min;        /* outer UDP source port range (host order) */
	__u16 sport_max;
	__u16 flags;            /* VLNET_CFG_* */
};

/* vlnet_node_config.flags */
#define VLNET_CFG_FLOW_TRACKING 1 /* track inner flows and their RTT (lib/flows.h) */
#define VLNET_CFG_RELAY 2         /* a gateway: relay between static peers and members
				   * (lib/relay.h) */

/*
 * vlnet_vnis[vni]: one VNI's overlay port and the size of its flood list,
 * whose slots are in vlnet_flood: slots 0 .. flood_zone - 1 hold the static
 * peers (the zone: VTEPs with VLNET_VTEP_LEARN), slots flood_zone ..
 * flood_count - 1 the members.
 */
struct vlnet_vni_config {
	__u32 overlay_ifindex; /* vlnet's end of the overlay veth */
	__u32 flood_count;     /* slots of the flood list (at most VLNET_MAX_FLOOD) */
	__u32 flags;           /* VLNET_VNI_*, set by the daemon */
	__u32 flood_zone;      /* the first flood_zone slots are static peers */
};

/* Key of vlnet_flood (value: the remote VTEP, network order). */
struct vlnet_flood_key {
	__u32 vni;
	__u32 slot; /* 0 .. flood_count - 1 */
};

/* vlnet_vni_config.flags */
#define VLNET_VNI_LEARN_PAUSED 1 /* no new learned keys: the VNI's FDB share is full */
#define VLNET_VNI_ARP_SUPPRESS 2 /* snoop local VMs' ARP/ND and answer requests for known
				  * bindings locally (lib/neigh.h), set by the daemon */
#define VLNET_VNI_BYPASS 4       /* the VNI has the bridge bypass: decap looks its unicast IP
				  * frames up in vlnet_bypass (lib/bypass.h), set by the daemon */
#define VLNET_VNI_CONTROL_ONLY 8 /* its MAC locations come from the control plane only (an EVPN
				  * VNI): frames move no MAC and teach no ARP/ND binding,
				  * whatever their VTEP's flags, set by the daemon */

/*
 * vlnet_vteps[vtep_be]: the only path a remote VTEP's VXLAN is accepted on,
 * and what its frames may do. A VTEP without an entry is accepted nowhere.
 */
struct vlnet_vtep {
	__u32 path;  /* VLNET_PATH_* */
	__u32 flags; /* VLNET_VTEP_* */
};

/* vlnet_vtep.path */
#define VLNET_PATH_UNDERLAY 1 /* arrives on the underlay (xdp_underlay_rx / tc_underlay_rx) */
#define VLNET_PATH_TUNNEL 2   /* arrives through the WireGuard TUN (tc_tunnel_rx) */

/* vlnet_vtep.flags */
#define VLNET_VTEP_LEARN 1 /* its frames may create and move learned FDB entries (static
			    * peers, and on a member the controller); without it (members)
			    * a frame may only confirm an entry that already points at it */
#define VLNET_VTEP_DIRECT 2 /* on a gateway, a member the EVPN zone reaches directly (it
			     * floods to its underlay address): the zone's floods are not
			     * relayed to it (lib/relay.h) */

/*
 * Key of vlnet_open_ports: a host port on this node that members may reach
 * through the tunnel (value: 1).
 */
struct vlnet_port_key {
	__u8 proto;    /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
	__u16 port_be; /* destination port */
};

/* Key of vlnet_fdb. */
struct vlnet_fdb_key {
	__u32 vni;
	__u8 mac[6];
	__u8 pad[2];
};

/* Value of vlnet_fdb: where a MAC lives. */
struct vlnet_fdb_entry {
	__u32 vtep_be;    /* remote VTEP */
	__u32 flags;      /* VLNET_FDB_* */
	__u64 updated_ns; /* bpf_ktime_get_ns() of the last confirmation */
};

/*
 * vlnet_nexthops[vtep_be]: how to reach a remote VTEP on the underlay,
 * resolved by the daemon from the kernel's routes and neighbours (managed
 * entries keep them fresh). ifindex 0 means "no route".
 */
struct vlnet_nexthop {
	__u32 ifindex;  /* egress interface */
	__u8 smac[6];   /* its MAC (zero for VLNET_NH_L3) */
	__u8 dmac[6];   /* next hop's MAC (zero for VLNET_NH_L3) */
	__u32 saddr_be; /* outer source address; 0: the node's local_vtep_be */
	__u32 flags;    /* VLNET_NH_* */
};

/* Key of vlnet_peers: a remote VTEP that belongs to a VNI. */
struct vlnet_peer_key {
	__u32 vni;
	__u32 vtep_be;
};

/* Value of vlnet_peers (per CPU): traffic with that peer, inner frames. */
struct vlnet_peer_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
};

/*
 * Index of vlnet_relay (per CPU): the direction of frames a gateway relays
 * (VLNET_CFG_RELAY). The zone is the static peers (a Proxmox SDN zone's
 * kernel-vxlan nodes), the members joined through WireGuard.
 */
#define VLNET_RELAY_TO_MEMBERS 0 /* decapsulated from a static peer, sent to members */
#define VLNET_RELAY_TO_ZONE 1    /* decapsulated from a member, sent to static peers */
#define VLNET_RELAY_DIRECTIONS 2

/* Value of vlnet_relay: copies a gateway sent in one direction. */
struct vlnet_relay_stats {
	__u64 packets; /* copies sent (a GSO packet counts as its segments) */
	__u64 bytes;   /* their inner frame bytes */
};

/*
 * ARP and IPv6 ND suppression (lib/neigh.h). Key of vlnet_neigh: an IP
 * address on a VNI (IPv4 in the first 4 bytes of the 16).
 */
struct vlnet_neigh_key {
	__u32 vni;
	__u8 family; /* VLNET_FAMILY_IPV4 or VLNET_FAMILY_IPV6 */
	__u8 pad[3];
	__u8 ip[16];
};

/* Value of vlnet_neigh: the MAC an IP address is bound to. */
struct vlnet_neigh {
	__u8 mac[6];
	__u8 flags; /* VLNET_NEIGH_* */
	__u8 pad;
};

/* vlnet_neigh.flags */
#define VLNET_NEIGH_LOCAL 1   /* snooped from a local VM's ARP/ND in tc_overlay_tx */
#define VLNET_NEIGH_CONTROL 2 /* from the control plane; a local VM's snoop never
			       * overwrites it with another MAC */
#define VLNET_NEIGH_ROUTER 4  /* the IPv6 owner is a router (its NA's R flag): the
			       * answered NA carries R too */
#define VLNET_NEIGH_ZONE 8    /* snooped from a static peer's decapsulated ARP/ND (a
			       * zone's VM): neither the control plane nor a local
			       * snoop overwrites it with another MAC; it replaces a
			       * control-plane binding */

/* Index of vlnet_suppress (per CPU, __u64 counters). */
#define VLNET_SUPPRESS_ARP_REPLIED 0 /* ARP requests answered here (a remote binding) */
#define VLNET_SUPPRESS_ND_REPLIED 1  /* neighbour solicitations answered here */
#define VLNET_SUPPRESS_ARP_LOCAL 2   /* ARP requests for a VM on this node: its bridge
				      * delivered them, none crossed a tunnel */
#define VLNET_SUPPRESS_ND_LOCAL 3    /* the same for neighbour solicitations */
#define VLNET_SUPPRESS_SNOOP_FULL 4  /* bindings not recorded: vlnet_neigh was full */
#define VLNET_SUPPRESS_COUNTERS 5

/*
 * Bridge bypass (per VNI, opt-in). vlnet_bypass, keyed by vlnet_fdb_key: a
 * local VM's MAC and the port it sits on, written by the daemon from what the
 * VNI's bridge learned (only eligible ports: no firewall bridge, no VLAN
 * filtering, no program of someone else's). A decapsulated IP frame for that
 * MAC goes straight to the port (tc_decap, or xdp_underlay_rx for a port with
 * VLNET_BYPASS_XDP); an IP frame from that MAC, entering
 * that port for a MAC known behind a remote VTEP, is encapsulated right there
 * (tc_vm_tx). Everything else takes the bridge and the overlay port.
 */
struct vlnet_bypass_port {
	__u32 ifindex; /* the VM's port on the VNI's bridge */
	__u32 flags;   /* VLNET_BYPASS_* */
	__u64 seen_ns; /* bpf_ktime_get_ns() of the newest frame from the VM that took the
			* bypass (refreshed at most every VLNET_BYPASS_SEEN_GAP_NS; the
			* bridge does not see those frames, so the daemon keeps the MAC
			* local while this is recent); 0: none yet */
};

/* vlnet_bypass_port.flags */
#define VLNET_BYPASS_PEER 1 /* a veth whose peer is in another namespace: delivered into
			     * the peer's ingress (bpf_redirect_peer), else to the port's
			     * egress (a tap: the VM) */
#define VLNET_BYPASS_XDP 2 /* the port takes XDP frames (a tap, or a veth whose peer runs a
			    * native XDP program): XDP decap redirects straight into it; a
			    * veth drops XDP frames for a peer without one */

/* How often a bypassed VM's frames refresh vlnet_bypass_port.seen_ns at most. */
#define VLNET_BYPASS_SEEN_GAP_NS (1000ULL * 1000 * 1000)

/* Index of vlnet_bypass_stats (per CPU, __u64 packet counters; GSO in segments). */
#define VLNET_BYPASS_RX 0 /* decapsulated frames delivered straight to a VM port */
#define VLNET_BYPASS_TX 1 /* VM frames encapsulated at their port (tc_vm_tx) */
#define VLNET_BYPASS_COUNTERS 2

/* Slot of the one-entry vlnet_arrivals_pending array. */
#define VLNET_PENDING_SLOT 0

/* vlnet_mac_event.kind */
#define VLNET_MOVE_REMOTE 1 /* decap found a MAC behind another VTEP than its entry said */
#define VLNET_MOVE_LOCAL 2  /* a frame from a MAC known behind a remote VTEP entered an
			     * overlay port: the MAC lives here now (its entry is removed) */
#define VLNET_MOVE_DELIVERED 3 /* the first frame for a MAC that moved here arrived
				* from old_vtep_be: the path has switched */
#define VLNET_MOVE_ARRIVED 4 /* a broadcast from a MAC not yet recorded as local
			      * entered an overlay port (a VM came up or moved
			      * here): the daemon reads the bridges at once */

/*
 * A MAC that moved, as the programs saw it, reported through the vlnet_events
 * ring buffer (one event per move: the entry is updated at the same time).
 */
struct vlnet_mac_event {
	__u64 ts_ns;       /* bpf_ktime_get_ns() when the frame was seen */
	__u32 vni;
	__u32 old_vtep_be; /* where the MAC was */
	__u32 new_vtep_be; /* where it is now; 0 for VLNET_MOVE_LOCAL */
	__u8 mac[6];
	__u8 kind;         /* VLNET_MOVE_* */
	__u8 pad;
};

/*
 * Per-flow latency, measured passively where the inner frames pass the VTEP
 * (ePPing's method): an outgoing packet's identifier (TCP TSval, a SYN's
 * sequence number + 1, an ICMP/ICMPv6 echo request's id and sequence) is
 * timestamped; the first incoming packet that echoes it (TSecr, the SYN-ACK's
 * acknowledgement number, the echo reply) closes one RTT sample: the time from
 * this VTEP to the remote endpoint and back, the remote host's reaction
 * included. Outgoing means from a local VM into the tunnel (tx), incoming
 * means decapsulated towards a local VM (rx).
 */

/* vlnet_flow_key.family */
#define VLNET_FAMILY_IPV4 4
#define VLNET_FAMILY_IPV6 6

/*
 * Key of vlnet_flows: one inner flow, both directions, seen from this node:
 * "local" is the endpoint behind this VTEP. IPv4 addresses fill the first 4
 * bytes of the 16. ICMP echo flows use the echo id as both ports.
 */
struct vlnet_flow_key {
	__u32 vni;
	__u8 local_ip[16];
	__u8 remote_ip[16];
	__u16 local_port_be;
	__u16 remote_port_be;
	__u8 proto;   /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6, ... */
	__u8 family;  /* VLNET_FAMILY_* */
	__u8 pad[2];
};

/* vlnet_flow.flags */
#define VLNET_FLOW_HAVE_TSVAL 1 /* last_tsval holds a TSval seen from the local side */

/* Value of vlnet_flows (LRU): one flow's traffic and RTT. */
struct vlnet_flow {
	__u64 first_seen_ns;  /* bpf_ktime_get_ns() */
	__u64 last_seen_ns;
	__u64 tx_packets;     /* local -> remote (GSO counted in segments) */
	__u64 tx_bytes;       /* inner frame bytes */
	__u64 rx_packets;     /* remote -> local */
	__u64 rx_bytes;
	__u64 rtt_min_ns;     /* 0 until the first sample */
	__u64 rtt_last_ns;
	__u64 srtt_ns;        /* smoothed: srtt += (sample - srtt) / 8 */
	__u64 rtt_samples;
	__u32 remote_vtep_be; /* the VTEP the remote endpoint is behind */
	__u32 last_tsval;     /* newest TSval from the local side (host order) */
	__u8 local_mac[6];    /* the local endpoint's MAC */
	__u8 flags;           /* VLNET_FLOW_* */
	__u8 pad;
	__u64 open_stamp_ns;  /* when the flow's newest stamp still awaiting its
			       * echo was taken; 0: none (see VLNET_RTT_STAMP_GAP_NS) */
};

/* vlnet_rtt_ident.kind */
#define VLNET_IDENT_TCP_TSVAL 1 /* ident = TSval, echoed in TSecr */
#define VLNET_IDENT_TCP_SYN 2   /* ident = SYN's seq + 1, echoed in SYN-ACK's ack */
#define VLNET_IDENT_ICMP_ECHO 3 /* ident = id << 16 | seq of an echo request */

/* Key of vlnet_flow_stamps (LRU): an outgoing identifier awaiting its echo. */
struct vlnet_rtt_ident {
	struct vlnet_flow_key flow;
	__u32 ident;
	__u8 kind;    /* VLNET_IDENT_* */
	__u8 pad[3];
};

/* Stamps older than this never close a sample (stale or wrapped identifiers). */
#define VLNET_RTT_MAX_AGE_NS (10ULL * 1000 * 1000 * 1000)

/*
 * Rate limit of stamps: a flow stamps a new identifier only while it has no
 * open stamp (one taken and not yet echoed), or when its open one is older
 * than this (its echo was lost). So a flow takes about one sample per RTT,
 * one per gap on longer paths, and the stamp map holds about one entry per
 * flow however fast the flow's TSvals change.
 */
#define VLNET_RTT_STAMP_GAP_NS (10ULL * 1000 * 1000)

/*
 * Buckets of vlnet_rtt_hists: bucket 0 counts RTTs below 2 us, bucket i
 * (1 <= i < VLNET_RTT_BUCKETS - 1) those in [2^i, 2^(i+1)) us, the last one
 * everything from 2^(VLNET_RTT_BUCKETS - 1) us (about 8.4 s) up.
 */
#define VLNET_RTT_BUCKETS 24

/* Value of vlnet_rtt_hists (per CPU), keyed by vlnet_peer_key. */
struct vlnet_rtt_hist {
	__u64 count[VLNET_RTT_BUCKETS];
	__u64 sum_ns;
};

#endif /* VLNET_ABI_H */
