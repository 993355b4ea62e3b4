/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* maps.h - every map vlnet's programs use; all pinned by name. */
#ifndef VLNET_MAPS_H
#define VLNET_MAPS_H

#include "common.h"

/* Node-wide settings (one slot). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vlnet_node_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_config SEC(".maps");

/* VNI -> overlay port and the size of its flood list. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct vlnet_vni_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_vnis SEC(".maps");

/* (VNI, slot) -> remote VTEP: every VNI's flood list (lib/flood.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VLNET_FLOOD_SLOTS);
	__type(key, struct vlnet_flood_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_flood SEC(".maps");

/* Frames a gateway relayed, by direction (VLNET_RELAY_*; lib/relay.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VLNET_RELAY_DIRECTIONS);
	__type(key, __u32);
	__type(value, struct vlnet_relay_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_relay SEC(".maps");

/* Overlay port ifindex (vlnet's end) -> VNI. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_ports SEC(".maps");

/* (VNI, MAC) -> remote VTEP. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VLNET_FDB_MAX);
	__type(key, struct vlnet_fdb_key);
	__type(value, struct vlnet_fdb_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_fdb SEC(".maps");

/* Remote VTEP -> underlay next hop, resolved in user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct vlnet_nexthop);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_nexthops SEC(".maps");

/* (VNI, remote VTEP) membership and traffic counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct vlnet_peer_key);
	__type(value, struct vlnet_peer_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_peers SEC(".maps");

/* Drop counters indexed by enum vlnet_drop_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VLNET_DROP__MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_drops SEC(".maps");

/*
 * L3 tunnel interface ifindex (a WireGuard TUN running tc_tunnel_rx) -> our
 * address on it (network order): VXLAN arriving there must be addressed to it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_tunnels SEC(".maps");

/* Remote VTEP -> the path its VXLAN must arrive on and what its frames may do. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VLNET_VTEPS_MAX);
	__type(key, __u32);
	__type(value, struct vlnet_vtep);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_vteps SEC(".maps");

/*
 * MACs living behind this node ((vni, mac) -> bpf_ktime_get_ns() when
 * recorded): learned by its bridges on ports other than the overlay port
 * (kept by the daemon), or seen in a broadcast leaving a local VM (recorded
 * here at once). A member's frame may not carry one as its source.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VLNET_LOCALS_MAX);
	__type(key, struct vlnet_fdb_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_locals SEC(".maps");

/* Bridge bypass: a local VM's MAC -> its port (see vlnet_abi.h, "Bridge bypass"). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VLNET_BYPASS_MAX);
	__type(key, struct vlnet_fdb_key);
	__type(value, struct vlnet_bypass_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_bypass SEC(".maps");

/* VM port ifindex -> its VNI: the ports tc_vm_tx runs on, kept by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VLNET_VM_PORTS_MAX);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_vm_ports SEC(".maps");

/* Bridge bypass counters indexed by VLNET_BYPASS_RX / _TX. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VLNET_BYPASS_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_bypass_stats SEC(".maps");

/*
 * (VNI, IP) -> the MAC it is bound to: snooped from local VMs' ARP/ND or
 * installed by the control plane (lib/neigh.h). A plain hash of fixed size:
 * when full, a new snooped binding is not recorded (counted as
 * VLNET_SUPPRESS_SNOOP_FULL) and requests for it flood as without
 * suppression.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VLNET_NEIGH_MAX);
	__type(key, struct vlnet_neigh_key);
	__type(value, struct vlnet_neigh);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_neigh SEC(".maps");

/* ARP/ND suppression counters indexed by VLNET_SUPPRESS_*. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VLNET_SUPPRESS_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_suppress SEC(".maps");

/* Host ports members may reach through the tunnel (lib/tunnel_filter.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VLNET_OPEN_PORTS_MAX);
	__type(key, struct vlnet_port_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_open_ports SEC(".maps");

/* MAC moves seen by the programs (struct vlnet_mac_event), for the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_events SEC(".maps");

/* Reports a MAC move; dropped silently when the daemon lags (rare: one per move). */
static __always_inline void report_move(__u32 vni, const __u8 *mac, __u32 old_vtep_be,
					__u32 new_vtep_be, __u8 kind)
{
	struct vlnet_mac_event ev = {
		.ts_ns = bpf_ktime_get_ns(),
		.vni = vni,
		.old_vtep_be = old_vtep_be,
		.new_vtep_be = new_vtep_be,
		.kind = kind,
	};

	__builtin_memcpy(ev.mac, mac, ETH_ALEN);
	bpf_ringbuf_output(&vlnet_events, &ev, sizeof(ev), 0);
}

/*
 * MACs that moved here and await their first frame from a remote VTEP
 * ((vni, mac) -> bpf_ktime_get_ns() of the move), and how many there are:
 * decap looks a frame's destination up only while the count is non-zero.
 * The daemon expires entries that never see a frame and keeps the count.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct vlnet_fdb_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_arrivals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_arrivals_pending SEC(".maps");

/* Inner flows seen at this VTEP (see vlnet_abi.h, "Per-flow latency"). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct vlnet_flow_key);
	__type(value, struct vlnet_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_flows SEC(".maps");

/* Outgoing identifiers awaiting their echo -> bpf_ktime_get_ns() when sent. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct vlnet_rtt_ident);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_flow_stamps SEC(".maps");

/* (VNI, remote VTEP) -> log2 histogram of the RTT samples of its flows. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct vlnet_peer_key);
	__type(value, struct vlnet_rtt_hist);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_rtt_hists SEC(".maps");

/* XDP mode: overlay port ifindex -> itself, for bpf_redirect_map. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vlnet_xdp_ports SEC(".maps");

#endif
