//! Two hosts on one underlay switch, joined the way an operator would by
//! hand with standard tools: a [`WireguardGo`] tunnel between their underlay
//! addresses, and in each host a kernel vxlan from its tunnel address to the
//! other's, over the tunnel, in the bridge of its one VM.
//!
//! ```text
//!   vm0 ─ br100 ─ vxlan100 ─ vg… (wireguard-go) ─ ul0 ── switch ── ul0 ─ vg… ─ vxlan100 ─ br100 ─ vm1
//! ```
//!
//! Addresses: hosts [`host_ip`](crate::beds::scenario::host_ip), tunnel [`TUNNEL_ADDRS`]/24 (the pool a
//! vlnet controller hands out from), VMs [`vm_ip`](crate::beds::scenario::vm_ip)
//! with MTU [`SECURE_VM_MTU`](crate::beds::cluster::SECURE_VM_MTU) (tunnel
//! [`WG_MTU`] − 50). [`WggoPair`] is a preset of the [`Bed`] builder, whose
//! [`SiteKind::Wggo`] sites are made with [`tunnel`] and [`vxlan_over`].

use std::net::{Ipv4Addr, SocketAddrV4};

use vlnet_ebpf::abi::{VLNET_ENCAP_LEN, VLNET_VXLAN_PORT};

use crate::beds::bed::{missing, Bed, SiteKind, SiteSpec};
use crate::beds::scenario::{BRIDGE, VNI};
use crate::primitives::netns::{unique_ifname, LabError};
use crate::primitives::topology::{Host, Underlay, Vm};
use crate::primitives::wggo::{WgPeer, WireguardGo, WG_MTU};

/// Host `i`'s tunnel address.
pub const TUNNEL_ADDRS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(198, 19, 0, 1), Ipv4Addr::new(198, 19, 0, 2)];
/// Prefix length of the tunnel subnet.
const TUNNEL_PREFIX: u8 = 24;
/// wireguard-go's listen port on both hosts.
pub const WG_PORT: u16 = 51820;

/// One host: its VM, its tunnel and the host itself (dropped in that order).
#[derive(Debug)]
pub struct WggoSite {
    /// The VM on [`BRIDGE`].
    pub vm: Vm,
    /// The wireguard-go interface.
    pub wg: WireguardGo,
    /// The host on the underlay.
    pub host: Host,
}

/// Two [`WggoSite`]s on one switch (dropped last).
#[derive(Debug)]
pub struct WggoPair {
    /// Host `i` has underlay [`host_ip`](crate::beds::scenario::host_ip)`(i)` and tunnel [`TUNNEL_ADDRS`]`[i]`.
    pub sites: [WggoSite; 2],
    /// The switch.
    pub underlay: Underlay,
}

impl WggoPair {
    /// Builds both hosts, their tunnel, vxlan devices, bridges and VMs. The
    /// first packet across starts the WireGuard handshake.
    pub fn build(tag: &str) -> Result<Self, LabError> {
        let bed = Bed::<Underlay>::builder(tag)
            .site(SiteSpec::numbered(0, SiteKind::Wggo).with_vm("vm0", 0))
            .site(SiteSpec::numbered(1, SiteKind::Wggo).with_vm("vm1", 1))
            .build()?;
        let sites = bed
            .sites
            .into_iter()
            .map(|s| {
                Ok(WggoSite {
                    vm: s.vm.ok_or_else(|| missing("VM", s.kind))?,
                    wg: s.wg.ok_or_else(|| missing("tunnel", s.kind))?,
                    host: s.seat,
                })
            })
            .collect::<Result<Vec<_>, LabError>>()?;
        Ok(Self {
            sites: sites
                .try_into()
                .map_err(|_| LabError::Invalid("a wireguard-go pair has two sites".into()))?,
            underlay: bed.net,
        })
    }
}

/// wireguard-go on both `hosts`, each the other's peer at its underlay
/// address, with tunnel addresses [`TUNNEL_ADDRS`].
pub(crate) fn tunnel(hosts: [&Host; 2]) -> Result<[WireguardGo; 2], LabError> {
    let wgs = [
        WireguardGo::start(hosts[0].ns(), &unique_ifname("vg"))?,
        WireguardGo::start(hosts[1].ns(), &unique_ifname("vg"))?,
    ];
    for i in 0..2 {
        let peer = 1 - i;
        wgs[i].set(
            WG_PORT,
            &WgPeer {
                public_key: wgs[peer].public_key().to_owned(),
                endpoint: SocketAddrV4::new(hosts[peer].ip(), WG_PORT),
                tunnel_addr: TUNNEL_ADDRS[peer],
            },
        )?;
        wgs[i].address(TUNNEL_ADDRS[i], TUNNEL_PREFIX, WG_MTU)?;
    }
    Ok(wgs)
}

/// End `i`'s vxlan over the tunnel `wg`, from [`TUNNEL_ADDRS`]`[i]` to the
/// other end's, on `host`'s [`BRIDGE`].
pub(crate) fn vxlan_over(host: &Host, wg: &WireguardGo, i: usize) -> Result<(), LabError> {
    let vxlan = format!("vxlan{VNI}");
    host.ns().run(&[
        "ip",
        "link",
        "add",
        &vxlan,
        "type",
        "vxlan",
        "id",
        &VNI.to_string(),
        "local",
        &TUNNEL_ADDRS[i].to_string(),
        "remote",
        &TUNNEL_ADDRS[1 - i].to_string(),
        "dstport",
        &VLNET_VXLAN_PORT.to_string(),
        "dev",
        wg.ifname(),
    ])?;
    host.ns()
        .run(&[
            "ip",
            "link",
            "set",
            &vxlan,
            "mtu",
            &(WG_MTU - VLNET_ENCAP_LEN).to_string(),
            "master",
            BRIDGE,
            "up",
        ])
        .map(drop)
}
