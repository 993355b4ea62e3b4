//! The configuration the data plane serves: the config file plus what the
//! control plane added (VNIs granted by the controller, members' VTEPs as
//! peers).

use crate::config::{Config, VniConfig};
use crate::control::Dynamic;

/// The bridge a VNI granted by the controller uses when the config file does
/// not name one: Proxmox SDN's convention of one `vnetN`-style bridge per VNI.
#[must_use]
pub fn default_bridge(vni: u32) -> String {
    format!("vnet{vni}")
}

/// `cfg` with `dynamic` merged in: granted VNIs missing from the file get a
/// `[[vni]]` of their own (bridge [`default_bridge`]), and every VNI's peers
/// gain the members serving it and, on an EVPN VNI, the VTEPs of its type-3
/// routes (never this node's own VTEP, never twice).
#[must_use]
pub fn effective_config(cfg: &Config, dynamic: &Dynamic) -> Config {
    let mut out = cfg.clone();
    for &vni in &dynamic.vnis {
        if !out.vni.iter().any(|v| v.id == vni) {
            out.vni.push(VniConfig {
                id: vni,
                bridge: default_bridge(vni),
                peers: Vec::new(),
                static_fdb: Vec::new(),
                fdb_max: None,
                arp_suppress: None,
                bypass: false,
                evpn: false,
                rd: None,
                route_targets: Vec::new(),
            });
        }
    }
    for v in &mut out.vni {
        let members = dynamic.peers.get(&v.id).into_iter().flatten();
        let evpn = dynamic.evpn.flood.get(&v.id).into_iter().flatten();
        for &peer in members.chain(evpn) {
            if !v.peers.contains(&peer) && Some(peer) != cfg.node.vtep {
                v.peers.push(peer);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::Path;

    use super::*;

    #[test]
    fn adds_granted_vnis_and_member_peers() {
        let cfg = Config::parse(
            "[node]\nname = \"c\"\nunderlay = \"ul0\"\nvtep = \"198.18.0.3\"\n\
             [wireguard]\n[[vni]]\nid = 100\nbridge = \"br100\"\npeers = [\"198.18.0.1\"]\n",
            Path::new("t"),
        )
        .unwrap();
        let a = Ipv4Addr::new(198, 19, 0, 1);
        let dynamic = Dynamic {
            vnis: [100, 200].into(),
            peers: [
                (100, [a, Ipv4Addr::new(198, 18, 0, 1)].into()),
                (200, [a, Ipv4Addr::new(198, 18, 0, 3)].into()),
            ]
            .into(),
            ..Dynamic::default()
        };
        let eff = effective_config(&cfg, &dynamic);
        assert_eq!(eff.vni.len(), 2);
        assert_eq!(eff.vni[0].bridge, "br100");
        assert_eq!(eff.vni[0].peers, [Ipv4Addr::new(198, 18, 0, 1), a]);
        assert_eq!(eff.vni[1].id, 200);
        assert_eq!(eff.vni[1].bridge, "vnet200");
        assert_eq!(eff.vni[1].peers, [a]);
    }

    #[test]
    fn evpn_vteps_join_their_vnis_flood_list() {
        let cfg = Config::parse(
            "[node]\nname = \"c\"\nunderlay = \"ul0\"\nvtep = \"198.18.0.1\"\n\
             [evpn]\nasn = 65000\nneighbors = [\"198.18.0.2\"]\n\
             [[vni]]\nid = 100\nbridge = \"br100\"\nevpn = true\n",
            Path::new("t"),
        )
        .unwrap();
        let b = Ipv4Addr::new(198, 18, 0, 2);
        let located = Ipv4Addr::new(198, 18, 0, 3);
        let dynamic = Dynamic {
            evpn: crate::evpn::agent::RemoteVteps {
                flood: [
                    (100, [b, Ipv4Addr::new(198, 18, 0, 1)].into()),
                    (300, [b].into()),
                ]
                .into(),
                located: [(100, [b, located].into())].into(),
            },
            ..Dynamic::default()
        };
        let eff = effective_config(&cfg, &dynamic);
        assert_eq!(eff.vni.len(), 1, "EVPN adds no VNI");
        assert_eq!(
            eff.vni[0].peers,
            [b],
            "never this node's own VTEP, nor one that only holds MACs"
        );
    }
}
