//! Which VM ports may take the bridge bypass: a pure decision on what
//! netlink and tc say about a port ([`PortFacts`]), so that it is tested
//! without interfaces. Only veth and tap ports are bypassed; a port behind a
//! Proxmox firewall bridge, on a bridge that filters VLANs, or carrying an
//! XDP or tc program of someone else's is left to the bridge, with a reason
//! for `vlnet ctl status`.

use thiserror::Error;
use vlnet_ebpf::abi::{VLNET_BYPASS_PEER, VLNET_BYPASS_XDP};

/// Name prefix of a Proxmox firewall bridge (`fwbr<vmid>i<n>`).
pub const FIREWALL_BRIDGE_PREFIX: &str = "fwbr";
/// Name prefixes of the veth pair joining a firewall bridge to the VM's
/// bridge (`fwpr<vmid>p<n>` on the VM's bridge, `fwln<vmid>i<n>` on the
/// firewall bridge).
pub const FIREWALL_PORT_PREFIXES: [&str; 2] = ["fwpr", "fwln"];

/// What netlink and tc say about one port of a bypass VNI's bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent facts netlink reports about a port, not states of one thing"
)]
pub struct PortFacts {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND` (`veth`, `tun`, `bond`, …); `None` for a physical NIC.
    pub kind: Option<String>,
    /// The bridge it sits on.
    pub bridge: String,
    /// Whether that bridge filters VLANs.
    pub vlan_filtering: bool,
    /// A veth's peer, when it is in this namespace.
    pub peer: Option<PeerFacts>,
    /// A veth whose peer is in another namespace (`IFLA_LINK_NETNSID`).
    pub peer_elsewhere: bool,
    /// Whether an XDP program runs on it.
    pub xdp: bool,
    /// Whether XDP redirects into it reach the VM (a tap; a veth whose
    /// peer runs a native XDP program): the XDP decap may deliver to it.
    pub takes_xdp_frames: bool,
    /// TC programs and filters on it that are not vlnet's (e.g. `tcx
    /// program 42 at ingress`, `tc filter matchall at ingress`).
    pub foreign_tc: Vec<String>,
}

/// A veth peer in this namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerFacts {
    /// Its name.
    pub name: String,
    /// The bridge it sits on, if any.
    pub bridge: Option<String>,
}

/// Why a port gets no bypass (shown after the port's name in `vlnet ctl
/// status`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// The port, or its veth peer, sits on a Proxmox firewall bridge: the
    /// firewall would be skipped.
    #[error("behind a Proxmox firewall bridge ({0})")]
    FirewallBridge(String),
    /// The port is one end of a Proxmox firewall bridge's veth pair.
    #[error("a Proxmox firewall port (its bridge filters the VM's traffic)")]
    FirewallPort,
    /// The bridge filters VLANs: the bypass does not tag or check VLANs.
    #[error("bridge {0} has VLAN filtering on")]
    VlanFiltering(String),
    /// Not a veth or a tap.
    #[error("a {0} port (only veth and tap ports are bypassed)")]
    Kind(String),
    /// Someone else's XDP program runs on it.
    #[error("carries an XDP program of someone else's")]
    Xdp,
    /// Someone else's TC programs or filters run on it.
    #[error("carries {}", .0.join(", "))]
    ForeignTc(Vec<String>),
}

/// Whether the port described by `facts` may take the bypass: its
/// `vlnet_bypass_port` flags if so, else why not.
pub fn verdict(facts: &PortFacts) -> Result<u32, Refusal> {
    if facts.bridge.starts_with(FIREWALL_BRIDGE_PREFIX) {
        return Err(Refusal::FirewallBridge(facts.bridge.clone()));
    }
    if let Some(bridge) = facts
        .peer
        .as_ref()
        .and_then(|p| p.bridge.as_ref())
        .filter(|b| b.starts_with(FIREWALL_BRIDGE_PREFIX))
    {
        return Err(Refusal::FirewallBridge(bridge.clone()));
    }
    if FIREWALL_PORT_PREFIXES
        .iter()
        .any(|p| facts.name.starts_with(p))
    {
        return Err(Refusal::FirewallPort);
    }
    if facts.vlan_filtering {
        return Err(Refusal::VlanFiltering(facts.bridge.clone()));
    }
    let mut flags = match facts.kind.as_deref() {
        Some("veth") if facts.peer_elsewhere => VLNET_BYPASS_PEER,
        Some("veth" | "tun" | "tap") => 0,
        Some(other) => return Err(Refusal::Kind(other.to_owned())),
        None => return Err(Refusal::Kind("physical".to_owned())),
    };
    if facts.xdp {
        return Err(Refusal::Xdp);
    }
    if !facts.foreign_tc.is_empty() {
        return Err(Refusal::ForeignTc(facts.foreign_tc.clone()));
    }
    if facts.takes_xdp_frames {
        flags |= VLNET_BYPASS_XDP;
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, kind: &str) -> PortFacts {
        PortFacts {
            ifindex: 7,
            name: name.to_owned(),
            kind: Some(kind.to_owned()),
            bridge: "vnet100".to_owned(),
            ..PortFacts::default()
        }
    }

    #[test]
    fn a_veth_into_another_namespace_is_delivered_to_its_peer() {
        let mut p = port("veth100", "veth");
        p.peer_elsewhere = true;
        assert_eq!(verdict(&p), Ok(VLNET_BYPASS_PEER));
    }

    #[test]
    fn a_tap_or_a_local_veth_is_delivered_out_of_the_port() {
        assert_eq!(verdict(&port("tap100i0", "tun")), Ok(0));
        let mut p = port("veth-a", "veth");
        p.peer = Some(PeerFacts {
            name: "veth-b".to_owned(),
            bridge: None,
        });
        assert_eq!(verdict(&p), Ok(0));
    }

    #[test]
    fn a_port_that_takes_xdp_frames_is_marked_for_the_xdp_decap() {
        let mut tap = port("tap100i0", "tun");
        tap.takes_xdp_frames = true;
        assert_eq!(verdict(&tap), Ok(VLNET_BYPASS_XDP));
        let mut veth = port("veth100", "veth");
        veth.peer_elsewhere = true;
        veth.takes_xdp_frames = true;
        assert_eq!(verdict(&veth), Ok(VLNET_BYPASS_PEER | VLNET_BYPASS_XDP));
        // Refused all the same when refused.
        tap.foreign_tc = vec!["tc filter u32 at ingress".to_owned()];
        assert!(verdict(&tap).is_err());
    }

    #[test]
    fn other_kinds_are_refused() {
        for kind in ["bond", "vlan", "vxlan", "bridge", "dummy"] {
            assert_eq!(
                verdict(&port("p", kind)),
                Err(Refusal::Kind(kind.to_owned())),
                "{kind}"
            );
        }
        let mut nic = port("eth1", "veth");
        nic.kind = None;
        assert_eq!(verdict(&nic), Err(Refusal::Kind("physical".to_owned())));
    }

    #[test]
    fn a_proxmox_firewall_bridge_is_never_skipped() {
        // fwpr100p0 on the VNI bridge, its peer fwln100i0 on fwbr100i0.
        let mut p = port("fwpr100p0", "veth");
        p.peer = Some(PeerFacts {
            name: "fwln100i0".to_owned(),
            bridge: Some("fwbr100i0".to_owned()),
        });
        let refused = verdict(&p).unwrap_err();
        assert_eq!(refused, Refusal::FirewallBridge("fwbr100i0".to_owned()));
        assert_eq!(
            refused.to_string(),
            "behind a Proxmox firewall bridge (fwbr100i0)"
        );
        // Named so, even with its peer out of sight.
        assert_eq!(
            verdict(&port("fwpr100p0", "veth")),
            Err(Refusal::FirewallPort)
        );
        assert_eq!(
            verdict(&port("fwln100i0", "veth")),
            Err(Refusal::FirewallPort)
        );
        let mut on_fw = port("tap100i0", "tun");
        on_fw.bridge = "fwbr100i0".to_owned();
        assert_eq!(
            verdict(&on_fw),
            Err(Refusal::FirewallBridge("fwbr100i0".to_owned()))
        );
    }

    #[test]
    fn vlan_filtering_and_foreign_programs_are_refused() {
        let mut p = port("tap1", "tun");
        p.vlan_filtering = true;
        assert_eq!(
            verdict(&p).map_err(|r| r.to_string()),
            Err("bridge vnet100 has VLAN filtering on".to_owned())
        );
        let mut p = port("tap1", "tun");
        p.xdp = true;
        assert_eq!(verdict(&p), Err(Refusal::Xdp));
        let mut p = port("tap1", "tun");
        p.foreign_tc = vec!["tc filter matchall at ingress".to_owned()];
        assert_eq!(
            verdict(&p).map_err(|r| r.to_string()),
            Err("carries tc filter matchall at ingress".to_owned())
        );
    }
}
