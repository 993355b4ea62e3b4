//! Reconciling the kernel maps with the desired state: what the config says,
//! resolved to interface indexes. Idempotent, so a restarted daemon converges
//! the maps it adopted without resetting counters or learned entries.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;

use vlnet_ebpf::abi::{
    vlnet_fdb_entry, vlnet_node_config, vlnet_vni_config, VLNET_CFG_FLOW_TRACKING, VLNET_CFG_RELAY,
    VLNET_FDB_STATIC, VLNET_MAX_FLOOD, VLNET_VNI_ARP_SUPPRESS, VLNET_VNI_BYPASS,
    VLNET_VNI_CONTROL_ONLY,
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
    /// Static remote VTEPs of the config (the zone): the flood list's first
    /// slots, and accepted sources.
    pub peers: Vec<Ipv4Addr>,
    /// Remote VTEPs the control plane added (members, or on a member the
    /// controller): the flood list's other slots, and accepted sources.
    pub members: Vec<Ipv4Addr>,
    /// Remote VTEPs that hold MACs without being flooded to (an EVPN VTEP
    /// whose type-2 routes came before, or without, its type-3 route):
    /// accepted sources whose FDB entries stay.
    pub located: Vec<Ipv4Addr>,
    /// Static MAC locations.
    pub static_fdb: Vec<([u8; 6], Ipv4Addr)>,
    /// ARP/ND suppression (`VLNET_VNI_ARP_SUPPRESS`, see `lib/neigh.h`).
    pub arp_suppress: bool,
    /// The bridge bypass (`VLNET_VNI_BYPASS`: decap looks the VNI's frames
    /// up in `vlnet_bypass`, see `lib/bypass.h`).
    pub bypass: bool,
    /// MAC locations from the control plane only (`VLNET_VNI_CONTROL_ONLY`:
    /// an EVPN VNI; frames from any VTEP move nothing).
    pub control_only: bool,
}

impl DesiredVni {
    /// The flood list: the static peers, then the members that are not
    /// static peers too.
    #[must_use]
    pub fn flood_list(&self) -> Vec<Ipv4Addr> {
        let extra = self.members.iter().filter(|m| !self.peers.contains(m));
        self.peers.iter().chain(extra).copied().collect()
    }

    /// Every remote VTEP of the VNI: the flood list, then the located
    /// VTEPs not in it.
    #[must_use]
    pub fn known(&self) -> Vec<Ipv4Addr> {
        let mut out = self.flood_list();
        for vtep in &self.located {
            if !out.contains(vtep) {
                out.push(*vtep);
            }
        }
        out
    }
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
/// flows' RTT, see `lib/flows.h`; `relay`: a gateway, relaying between
/// static peers and members, see `lib/relay.h`).
#[must_use]
pub fn node_config(
    underlay_ifindex: u32,
    vtep: Ipv4Addr,
    underlay_mtu: u32,
    outer: OuterHeader,
    flow_tracking: bool,
    relay: bool,
) -> vlnet_node_config {
    let mut flags = 0;
    if flow_tracking {
        flags |= VLNET_CFG_FLOW_TRACKING as u16;
    }
    if relay {
        flags |= VLNET_CFG_RELAY as u16;
    }
    vlnet_node_config {
        underlay_ifindex,
        local_vtep_be: u32::from(vtep).to_be(),
        underlay_mtu,
        inherit_dscp: u32::from(outer.dscp.is_none()),
        ttl: outer.ttl,
        tos: outer.dscp.unwrap_or(0) << 2,
        sport_min: outer.sport_range.0,
        sport_max: outer.sport_range.1,
        flags,
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

/// The VNI's entry of `vlnet_vnis` for a flood list of `flood` VTEPs whose
/// first `zone` are static peers.
fn vni_config(v: &DesiredVni, flood: usize, zone: usize) -> vlnet_vni_config {
    vlnet_vni_config {
        overlay_ifindex: v.overlay_ifindex,
        flood_count: flood as u32,
        flood_zone: zone as u32,
        ..Default::default()
    }
}

/// Writes `v`'s flood list into its slots (before the VNI's entry gives its
/// new length; slots past it are removed after, so a flood racing with the
/// change reaches the old or the new VTEP of a slot). Returns the list's
/// length and how many static peers lead it.
fn apply_flood(maps: &mut Maps, v: &DesiredVni) -> Result<(usize, usize), MapsError> {
    let flood = v.flood_list();
    if flood.len() > VLNET_MAX_FLOOD as usize {
        return Err(MapsError::FloodList {
            vni: v.vni,
            len: flood.len(),
        });
    }
    for (slot, vtep) in flood.iter().enumerate() {
        maps.set_flood_slot(v.vni, slot as u32, *vtep)?;
    }
    Ok((flood.len(), v.peers.len()))
}

/// Brings the maps to `desired`: writes what is missing or different and
/// removes what is no longer configured (VNIs, flood list slots, ports,
/// peers, static entries, MAC locations behind a VTEP that is no longer
/// known on its VNI, VTEP bindings and open ports). Peer counters, other
/// learned entries and each VNI's flags (set by the capacity task) are kept,
/// but for ARP suppression, which is the config's.
pub fn apply(maps: &mut Maps, desired: &Desired) -> Result<(), MapsError> {
    maps.set_node_config(&desired.node)?;
    apply_trust(maps, desired)?;

    let ports: HashSet<u32> = desired.vnis.iter().map(|v| v.overlay_ifindex).collect();
    let peers: HashSet<(u32, Ipv4Addr)> = desired
        .vnis
        .iter()
        .flat_map(|v| v.known().into_iter().map(|p| (v.vni, p)))
        .collect();
    let statics: HashSet<(u32, [u8; 6])> = desired
        .vnis
        .iter()
        .flat_map(|v| v.static_fdb.iter().map(|(mac, _)| (v.vni, *mac)))
        .collect();

    let mut flood_len = BTreeMap::new();
    for v in &desired.vnis {
        for peer in v.known() {
            maps.ensure_peer(v.vni, peer)?;
        }
        let (flood, zone) = apply_flood(maps, v)?;
        flood_len.insert(v.vni, flood as u32);
        let mut cfg = vni_config(v, flood, zone);
        // The daemon's own flags follow the config; the kernel's stay.
        let ours = VLNET_VNI_ARP_SUPPRESS | VLNET_VNI_BYPASS | VLNET_VNI_CONTROL_ONLY;
        let kept = maps.vni(v.vni).map_or(0, |current| current.flags & !ours);
        let flag = |on: bool, bit: u32| if on { bit } else { 0 };
        cfg.flags = kept
            | flag(v.arp_suppress, VLNET_VNI_ARP_SUPPRESS)
            | flag(v.bypass, VLNET_VNI_BYPASS)
            | flag(v.control_only, VLNET_VNI_CONTROL_ONLY);
        maps.set_vni(v.vni, &cfg)?;
        maps.set_port(v.overlay_ifindex, v.vni)?;
        for (mac, vtep) in &v.static_fdb {
            let entry = vlnet_fdb_entry {
                vtep_be: u32::from(*vtep).to_be(),
                flags: VLNET_FDB_STATIC,
                updated_ns: monotonic_ns(),
            };
            maps.set_fdb(&fdb_key(v.vni, *mac), &entry)?;
            // Pinned behind a remote VTEP: never delivered to a local port.
            maps.forget_bypass(v.vni, *mac)?;
        }
        if desired.xdp {
            maps.set_xdp_port(v.overlay_ifindex)?;
        }
    }

    for vni in maps
        .vnis()
        .into_iter()
        .filter(|v| !flood_len.contains_key(v))
    {
        maps.remove_vni(vni)?;
    }
    for (vni, slot, _) in maps.flood_slots() {
        if flood_len.get(&vni).is_none_or(|len| slot >= *len) {
            maps.remove_flood_slot(vni, slot)?;
        }
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
        let cfg = node_config(3, Ipv4Addr::new(198, 18, 0, 1), 1500, outer, true, false);
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
            true,
        );
        assert_eq!(u32::from(inherit.flags), VLNET_CFG_RELAY);
        assert_eq!((inherit.tos, inherit.inherit_dscp), (0, 1));
    }

    #[test]
    fn flood_list_puts_static_peers_first_and_lists_each_vtep_once() {
        let zone = [Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3)];
        let members = [Ipv4Addr::new(198, 19, 0, 2), Ipv4Addr::new(198, 19, 0, 3)];
        let v = DesiredVni {
            vni: 100,
            overlay_ifindex: 9,
            peers: zone.to_vec(),
            members: vec![members[0], zone[1], members[1]],
            located: vec![members[1], Ipv4Addr::new(198, 18, 0, 9)],
            static_fdb: vec![],
            arp_suppress: true,
            bypass: false,
            control_only: false,
        };
        assert_eq!(v.flood_list(), [zone[0], zone[1], members[0], members[1]]);
        assert_eq!(
            v.known(),
            [
                zone[0],
                zone[1],
                members[0],
                members[1],
                Ipv4Addr::new(198, 18, 0, 9)
            ],
            "located VTEPs are known, not flooded"
        );
        let cfg = vni_config(&v, 4, 2);
        assert_eq!((cfg.flood_count, cfg.flood_zone), (4, 2));
        assert_eq!(cfg.overlay_ifindex, 9);
    }
}
