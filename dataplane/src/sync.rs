//! Reconciling the kernel maps with the desired state: what the config says,
//! resolved to interface indexes. Idempotent, so a restarted daemon converges
//! the maps it adopted without resetting counters or learned entries.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;

use vlnet_ebpf::abi::{
    vlnet_fdb_entry, vlnet_node_config, vlnet_vni_config, VLNET_CFG_FLOW_TRACKING,
    VLNET_FDB_STATIC, VLNET_MAX_FLOOD,
};

use crate::config::Proto;
use crate::fdb::{is_static, monotonic_ns};
use crate::maps::{fdb_key, Maps, MapsError};
use crate::trust::VtepBinding;

/// Default outer UDP source port range (the kernel's `ip_local_port_range`).
pub const DEFAULT_SPORT_RANGE: (u16, u16) = (32768, 60999);

/// One VNI as the kernel should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredVni {
    /// VXLAN network identifier.
    pub vni: u32,
    /// Ifindex of vlnet's end of the overlay port.
    pub overlay_ifindex: u32,
    /// Remote VTEPs (flood list and accepted sources).
    pub peers: Vec<Ipv4Addr>,
    /// Static MAC locations.
    pub static_fdb: Vec<([u8; 6], Ipv4Addr)>,
}

/// The whole node as the kernel should see it.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Node-wide settings.
    pub node: vlnet_node_config,
    /// Every VNI.
    pub vnis: Vec<DesiredVni>,
    /// Whether decap runs at XDP (overlay ports become redirect targets).
    pub xdp: bool,
    /// Every remote VTEP's path and trust ([`crate::trust::vtep_bindings`]);
    /// VXLAN from a VTEP not listed is accepted on no path.
    pub vteps: BTreeMap<Ipv4Addr, VtepBinding>,
    /// The host ports members may reach through the tunnel.
    pub open_ports: BTreeSet<(Proto, u16)>,
}

/// Outer-header settings for [`node_config`].
#[derive(Debug, Clone, Copy)]
pub struct OuterHeader {
    /// Outer TTL.
    pub ttl: u8,
    /// Fixed DSCP (0..=63), or `None` to inherit the inner packet's.
    pub dscp: Option<u8>,
    /// Outer UDP source port range.
    pub sport_range: (u16, u16),
}

/// Builds the node-wide kernel settings (`flow_tracking`: measure inner
/// flows' RTT, see `lib/flows.h`).
#[must_use]
pub fn node_config(
    underlay_ifindex: u32,
    vtep: Ipv4Addr,
    underlay_mtu: u32,
    outer: OuterHeader,
    flow_tracking: bool,
) -> vlnet_node_config {
    vlnet_node_config {
        underlay_ifindex,
        local_vtep_be: u32::from(vtep).to_be(),
        underlay_mtu,
        inherit_dscp: u32::from(outer.dscp.is_none()),
        ttl: outer.ttl,
        tos: outer.dscp.unwrap_or(0) << 2,
        sport_min: outer.sport_range.0,
        sport_max: outer.sport_range.1,
        flags: if flow_tracking {
            VLNET_CFG_FLOW_TRACKING as u16
        } else {
            0
        },
    }
}

/// Reads the kernel's local port range, the range its vxlan driver draws
/// outer source ports from; falls back to [`DEFAULT_SPORT_RANGE`].
#[must_use]
pub fn local_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut it = text.split_whitespace().map(str::parse::<u16>);
            match (it.next(), it.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi => Some((lo, hi)),
                _ => None,
            }
        })
        .unwrap_or(DEFAULT_SPORT_RANGE)
}

fn vni_config(v: &DesiredVni) -> vlnet_vni_config {
    let mut cfg = vlnet_vni_config {
        overlay_ifindex: v.overlay_ifindex,
        ..Default::default()
    };
    for (slot, peer) in cfg
        .flood_be
        .iter_mut()
        .zip(&v.peers)
        .take(VLNET_MAX_FLOOD as usize)
    {
        *slot = u32::from(*peer).to_be();
    }
    cfg.flood_count = v.peers.len().min(VLNET_MAX_FLOOD as usize) as u32;
    cfg
}

/// Brings the maps to `desired`: writes what is missing or different and
/// removes what is no longer configured (VNIs, ports, peers, static entries,
/// MAC locations behind a VTEP that is no longer a peer of its VNI, VTEP
/// bindings and open ports). Peer counters, other learned entries and each
/// VNI's flags (set by the capacity task) are kept.
pub fn apply(maps: &mut Maps, desired: &Desired) -> Result<(), MapsError> {
    maps.set_node_config(&desired.node)?;
    apply_trust(maps, desired)?;

    let vnis: HashSet<u32> = desired.vnis.iter().map(|v| v.vni).collect();
    let ports: HashSet<u32> = desired.vnis.iter().map(|v| v.overlay_ifindex).collect();
    let peers: HashSet<(u32, Ipv4Addr)> = desired
        .vnis
        .iter()
        .flat_map(|v| v.peers.iter().map(|p| (v.vni, *p)))
        .collect();
    let statics: HashSet<(u32, [u8; 6])> = desired
        .vnis
        .iter()
        .flat_map(|v| v.static_fdb.iter().map(|(mac, _)| (v.vni, *mac)))
        .collect();

    for v in &desired.vnis {
        let mut cfg = vni_config(v);
        cfg.flags = maps.vni(v.vni).map_or(0, |current| current.flags);
        maps.set_vni(v.vni, &cfg)?;
        maps.set_port(v.overlay_ifindex, v.vni)?;
        for peer in &v.peers {
            maps.ensure_peer(v.vni, *peer)?;
        }
        for (mac, vtep) in &v.static_fdb {
            let entry = vlnet_fdb_entry {
                vtep_be: u32::from(*vtep).to_be(),
                flags: VLNET_FDB_STATIC,
                updated_ns: monotonic_ns(),
            };
            maps.set_fdb(&fdb_key(v.vni, *mac), &entry)?;
        }
        if desired.xdp {
            maps.set_xdp_port(v.overlay_ifindex)?;
        }
    }

    for vni in maps.vnis().into_iter().filter(|v| !vnis.contains(v)) {
        maps.remove_vni(vni)?;
    }
    for port in maps.ports().into_iter().filter(|p| !ports.contains(p)) {
        maps.remove_port(port)?;
    }
    for stale in maps
        .peers()
        .into_iter()
        .filter(|p| !peers.contains(&(p.vni, p.vtep)))
    {
        maps.remove_peer(stale.vni, stale.vtep)?;
    }
    for (key, entry) in maps.fdb() {
        let unwanted_static = is_static(&entry) && !statics.contains(&(key.vni, key.mac));
        let vtep = Ipv4Addr::from(u32::from_be(entry.vtep_be));
        if unwanted_static || !peers.contains(&(key.vni, vtep)) {
            maps.remove_fdb(&key)?;
        }
    }
    for port in maps.xdp_ports() {
        if !desired.xdp || !ports.contains(&port) {
            maps.remove_xdp_port(port)?;
        }
    }
    Ok(())
}

/// Writes the VTEP bindings and open ports of `desired`, first (a VTEP is
/// bound before it becomes a peer), and removes the others.
fn apply_trust(maps: &mut Maps, desired: &Desired) -> Result<(), MapsError> {
    for (vtep, binding) in &desired.vteps {
        maps.set_vtep(*vtep, &binding.to_kernel())?;
    }
    for (vtep, _) in maps.vteps() {
        if !desired.vteps.contains_key(&vtep) {
            maps.remove_vtep(vtep)?;
        }
    }
    let open: BTreeSet<(u8, u16)> = desired
        .open_ports
        .iter()
        .map(|(proto, port)| (proto.number(), *port))
        .collect();
    let current = maps.open_ports();
    for &(proto, port) in open.difference(&current) {
        maps.open_port(proto, port)?;
    }
    for &(proto, port) in current.difference(&open) {
        maps.close_port(proto, port)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_config_encodes_outer_header_settings() {
        let outer = OuterHeader {
            ttl: 32,
            dscp: Some(46),
            sport_range: (1000, 2000),
        };
        let cfg = node_config(3, Ipv4Addr::new(198, 18, 0, 1), 1500, outer, true);
        assert_eq!(u32::from(cfg.flags), VLNET_CFG_FLOW_TRACKING);
        assert_eq!(cfg.local_vtep_be, u32::from_ne_bytes([198, 18, 0, 1]));
        assert_eq!((cfg.ttl, cfg.tos, cfg.inherit_dscp), (32, 46 << 2, 0));
        let inherit = node_config(
            3,
            Ipv4Addr::new(198, 18, 0, 1),
            1500,
            OuterHeader {
                dscp: None,
                ..outer
            },
            false,
        );
        assert_eq!(inherit.flags, 0);
        assert_eq!((inherit.tos, inherit.inherit_dscp), (0, 1));
    }

    #[test]
    fn flood_list_is_in_network_order() {
        let v = DesiredVni {
            vni: 100,
            overlay_ifindex: 9,
            peers: vec![Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3)],
            static_fdb: vec![],
        };
        let cfg = vni_config(&v);
        assert_eq!(cfg.flood_count, 2);
        assert_eq!(cfg.flood_be[1], u32::from_ne_bytes([198, 18, 0, 3]));
        assert_eq!(cfg.overlay_ifindex, 9);
    }
}
