//! Who may send what, as the data plane enforces it: every remote VTEP is
//! bound to the one path its VXLAN may arrive on (the underlay, or the
//! WireGuard tunnel) and either may or may not move MACs with its frames;
//! members reach only the host ports the operator opened. Pure: computed
//! from the config and what the control plane serves, written into the maps
//! by [`crate::sync`].
//!
//! - A member's tunnel address: the tunnel, no learning (its MACs come
//!   through the control plane, where ownership is checked); on a gateway,
//!   marked direct when the EVPN zone floods to it itself.
//! - On a member, the controller's tunnel address: the tunnel, learning (it
//!   relays the cloud, whose VMs migrate).
//! - A VTEP of an EVPN VNI: the underlay, "learning" as a zone VTEP (a
//!   gateway relays between it and the members), though its VNIs are
//!   control-only in the kernel: its frames move no MAC there.
//! - On a member the gateway advertises with its own address, the EVPN
//!   zone's VTEPs the controller lists: the underlay, learning.
//! - A static peer of the config: learning; the tunnel if its address lies
//!   in the WireGuard interface's network (a "secure" static peer reached at
//!   its tunnel address), else the underlay. A static peer that is also a
//!   member keeps the config's binding: the operator listed it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use vlnet_ebpf::abi::{
    vlnet_vtep, VLNET_PATH_TUNNEL, VLNET_PATH_UNDERLAY, VLNET_VTEP_DIRECT, VLNET_VTEP_LEARN,
};

use crate::config::{Config, Proto};
use crate::control::Dynamic;

/// The path a remote VTEP's VXLAN must arrive on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VtepPath {
    /// The underlay (`xdp_underlay_rx` / `tc_underlay_rx`).
    Underlay,
    /// The WireGuard tunnel (`tc_tunnel_rx`).
    Tunnel,
}

/// What the data plane accepts from one remote VTEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VtepBinding {
    /// Where its VXLAN must arrive.
    pub path: VtepPath,
    /// Whether its frames may create and move learned FDB entries.
    pub learn: bool,
    /// On a gateway, a member the EVPN zone reaches directly
    /// (`VLNET_VTEP_DIRECT`: the zone's floods are not relayed to it).
    pub direct: bool,
}

impl VtepBinding {
    /// A joined member: through the tunnel, moving no MACs.
    pub const MEMBER: Self = Self {
        path: VtepPath::Tunnel,
        learn: false,
        direct: false,
    };
    /// A VTEP of an EVPN VNI (from its type-2 or type-3 routes): on the
    /// underlay, and part of the zone a gateway relays its members to (the
    /// kernel's `VLNET_VTEP_LEARN`). It moves no MACs all the same: it is a
    /// peer of EVPN VNIs only, and those are control-only
    /// (`VLNET_VNI_CONTROL_ONLY`), their MACs from type-2 routes.
    pub const EVPN: Self = Self {
        path: VtepPath::Underlay,
        learn: true,
        direct: false,
    };
    /// On a member the gateway advertises with its own address, a VTEP of
    /// the EVPN zone that sends it plain VXLAN: on the underlay, and
    /// learning (the member's VNI is no EVPN VNI: a frame of a zone VM that
    /// arrives directly places that VM behind its VTEP, so the answer goes
    /// straight back as well).
    pub const DIRECT_ZONE: Self = Self {
        path: VtepPath::Underlay,
        learn: true,
        direct: false,
    };
    /// The controller, seen from a member: through the tunnel, learning.
    pub const CONTROLLER: Self = Self {
        path: VtepPath::Tunnel,
        learn: true,
        direct: false,
    };

    /// The entry of `vlnet_vteps`.
    #[must_use]
    pub fn to_kernel(self) -> vlnet_vtep {
        vlnet_vtep {
            path: match self.path {
                VtepPath::Underlay => VLNET_PATH_UNDERLAY,
                VtepPath::Tunnel => VLNET_PATH_TUNNEL,
            },
            flags: if self.learn { VLNET_VTEP_LEARN } else { 0 }
                | if self.direct { VLNET_VTEP_DIRECT } else { 0 },
        }
    }
}

/// Every remote VTEP's binding: the EVPN VTEPs, the members and (on a
/// member) the controller from `dynamic`, and the static peers of `cfg` (the config
/// file), which are on the tunnel when `tunnel` (the WireGuard interface's
/// network, once it is up) contains them.
#[must_use]
pub fn vtep_bindings(
    cfg: &Config,
    dynamic: &Dynamic,
    tunnel: Option<Ipv4Network>,
) -> BTreeMap<Ipv4Addr, VtepBinding> {
    let mut out = BTreeMap::new();
    let evpn = [&dynamic.evpn.flood, &dynamic.evpn.located];
    for &vtep in evpn
        .into_iter()
        .flat_map(|by_vni| by_vni.values().flatten())
    {
        out.insert(vtep, VtepBinding::EVPN);
    }
    for &vtep in dynamic.direct.values().flatten() {
        out.insert(vtep, VtepBinding::DIRECT_ZONE);
    }
    for &member in dynamic.peers.values().flatten() {
        let direct = dynamic.direct_members.contains(&member);
        out.insert(
            member,
            VtepBinding {
                direct,
                ..VtepBinding::MEMBER
            },
        );
    }
    for &controller in &dynamic.trusted {
        out.insert(controller, VtepBinding::CONTROLLER);
    }
    for &peer in cfg.vni.iter().flat_map(|v| &v.peers) {
        let path = if tunnel.is_some_and(|net| net.contains(peer)) {
            VtepPath::Tunnel
        } else {
            VtepPath::Underlay
        };
        out.insert(
            peer,
            VtepBinding {
                path,
                learn: true,
                direct: false,
            },
        );
    }
    out
}

/// The host ports members may reach through the tunnel: `[wireguard]
/// open_ports` and, on a controller, the control port; none without a
/// `[wireguard]` section.
#[must_use]
pub fn open_ports(cfg: &Config) -> BTreeSet<(Proto, u16)> {
    cfg.wireguard
        .as_ref()
        .map(crate::config::WireguardConfig::open_port_set)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const MEMBER_A: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
    const MEMBER_B: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 3);
    const CONTROLLER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
    const KERNEL_PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 200);
    const SECURE_PEER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 9);

    fn config(extra_wg: &str) -> Config {
        Config::parse(
            &format!(
                "[node]\nname = \"n\"\nunderlay = \"ul0\"\n\
                 [[vni]]\nid = 100\nbridge = \"b\"\npeers = [\"{KERNEL_PEER}\", \"{SECURE_PEER}\"]\n\
                 [wireguard]\n{extra_wg}"
            ),
            Path::new("t"),
        )
        .unwrap()
    }

    fn dynamic(trusted: &[Ipv4Addr]) -> Dynamic {
        Dynamic {
            peers: [
                (100, [MEMBER_A, CONTROLLER].into()),
                (200, [MEMBER_B].into()),
            ]
            .into(),
            trusted: trusted.iter().copied().collect(),
            ..Dynamic::default()
        }
    }

    #[test]
    fn evpn_vteps_are_zone_vteps_on_the_underlay() {
        let evpn_only = Ipv4Addr::new(198, 18, 0, 7);
        let located_only = Ipv4Addr::new(198, 18, 0, 8);
        let d = Dynamic {
            evpn: crate::evpn::agent::RemoteVteps {
                flood: [(300, [evpn_only, KERNEL_PEER].into())].into(),
                located: [(300, [located_only].into())].into(),
            },
            ..Dynamic::default()
        };
        let b = vtep_bindings(&config(""), &d, None);
        assert_eq!(b[&evpn_only], VtepBinding::EVPN);
        assert_eq!(b[&evpn_only].path, VtepPath::Underlay);
        assert!(
            b[&evpn_only].learn,
            "the zone side of a gateway's relay (its VNIs learn nothing)"
        );
        assert_eq!(
            b[&located_only],
            VtepBinding::EVPN,
            "a VTEP with type-2 routes only"
        );
        assert!(
            b[&KERNEL_PEER].learn,
            "a static peer keeps the config's binding"
        );
    }

    #[test]
    fn a_direct_members_zone_vteps_are_learning_underlay_vteps() {
        let frr = Ipv4Addr::new(198, 18, 0, 30);
        let d = Dynamic {
            direct: [(100, [frr, MEMBER_B].into())].into(),
            ..dynamic(&[CONTROLLER])
        };
        let net: Ipv4Network = "198.19.0.2/24".parse().unwrap();
        let b = vtep_bindings(&config(""), &d, Some(net));
        assert_eq!(b[&frr], VtepBinding::DIRECT_ZONE);
        assert_eq!(b[&frr].path, VtepPath::Underlay);
        assert!(b[&frr].learn);
        assert_eq!(
            b[&MEMBER_B],
            VtepBinding::MEMBER,
            "a member's address stays a member's, whatever the list says"
        );
        // On a gateway, a direct member is marked so.
        let gateway = Dynamic {
            direct_members: [MEMBER_A].into(),
            ..dynamic(&[])
        };
        let b = vtep_bindings(&config(""), &gateway, Some(net));
        assert!(b[&MEMBER_A].direct && !b[&MEMBER_B].direct);
        assert_eq!(
            b[&MEMBER_A].to_kernel().flags,
            VLNET_VTEP_DIRECT,
            "no learning"
        );
    }

    #[test]
    fn members_come_through_the_tunnel_and_move_no_macs() {
        let net: Ipv4Network = "198.19.0.2/24".parse().unwrap();
        let b = vtep_bindings(&config(""), &dynamic(&[CONTROLLER]), Some(net));
        assert_eq!(b[&MEMBER_A], VtepBinding::MEMBER);
        assert_eq!(b[&MEMBER_B], VtepBinding::MEMBER);
        assert_eq!(
            b[&CONTROLLER],
            VtepBinding::CONTROLLER,
            "trusted on a member"
        );
        assert_eq!(
            b[&KERNEL_PEER],
            VtepBinding {
                path: VtepPath::Underlay,
                learn: true,
                direct: false,
            }
        );
        assert_eq!(
            b[&SECURE_PEER],
            VtepBinding {
                path: VtepPath::Tunnel,
                learn: true,
                direct: false,
            },
            "a static peer inside the tunnel's network"
        );
        assert_eq!(b.len(), 5);
    }

    #[test]
    fn without_a_tunnel_static_peers_are_on_the_underlay() {
        let b = vtep_bindings(&config(""), &dynamic(&[]), None);
        assert_eq!(b[&SECURE_PEER].path, VtepPath::Underlay);
        assert_eq!(
            b[&CONTROLLER],
            VtepBinding::MEMBER,
            "not trusted: a member like any other"
        );
    }

    #[test]
    fn a_static_peer_that_is_also_a_member_keeps_the_configs_binding() {
        let mut d = dynamic(&[]);
        d.peers.entry(100).or_default().insert(KERNEL_PEER);
        let b = vtep_bindings(&config(""), &d, None);
        assert!(b[&KERNEL_PEER].learn);
        assert_eq!(b[&KERNEL_PEER].path, VtepPath::Underlay);
    }

    #[test]
    fn kernel_entries() {
        let member = VtepBinding::MEMBER.to_kernel();
        assert_eq!((member.path, member.flags), (VLNET_PATH_TUNNEL, 0));
        let peer = VtepBinding {
            path: VtepPath::Underlay,
            learn: true,
            direct: false,
        }
        .to_kernel();
        assert_eq!(
            (peer.path, peer.flags),
            (VLNET_PATH_UNDERLAY, VLNET_VTEP_LEARN)
        );
    }

    #[test]
    fn open_ports_come_from_the_wireguard_section() {
        let member = config("open_ports = [\"tcp/4444\"]\n");
        assert_eq!(
            open_ports(&member).into_iter().collect::<Vec<_>>(),
            [(Proto::Tcp, 4444)]
        );
        let controller =
            config("role = \"controller\"\naddress = \"198.19.0.1/24\"\ncontrol_port = 7470\n");
        assert_eq!(
            open_ports(&controller).into_iter().collect::<Vec<_>>(),
            [(Proto::Tcp, 7470)]
        );
        let mut plain = config("");
        plain.wireguard = None;
        assert!(open_ports(&plain).is_empty());
    }
}
