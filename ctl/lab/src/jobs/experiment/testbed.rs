//! The three test-beds, each with two hosts A and B (the guest moves A → B)
//! and a user at B's site:
//!
//! ```text
//! lan       A: br100 ⊃ ul0 ── switch ── ul0 ⊂ br100 :B ── user VM
//!           (198.18.0.1 on A's bridge, .2 on B's; guest taps in the bridges)
//! vxlan     A: vlnet ── underlay switch ── vlnet :B ── user VM
//!           (VXLAN VNI 100 between 198.18.0.1 and .2)
//! vxlan-wg  A: vlnet controller ── cloud LAN ── WAN router ══ delay line ══ B: vlnet member ── user VM
//!           (VXLAN inside WireGuard; the delay line gives the WAN its RTT)
//! ```
//!
//! Everything is a lab guard: dropping the [`Testbed`] removes it all.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::setting::Setting;
use crate::beds::cluster::{Cluster, ClusterOptions, Place};
use crate::beds::guest::{migration_open_port, GuestSites, GUEST_MAC};
use crate::beds::scenario::{host_ip, site_host, vm_ip, vm_mac, Scenario, Vtep, BRIDGE};
use crate::primitives::topology::{Host, Underlay, Vm};
use crate::{Datapath, LabError};

/// Site index of the user's VM in every test-bed (its address is
/// [`vm_ip`] of it).
const USER: usize = 1;

/// Two hosts on one L2 LAN whose bridges enslave their LAN ports.
struct Lan {
    user: Vm,
    hosts: [Host; 2],
    _underlay: Underlay,
}

impl Lan {
    fn build(tag: &str) -> Result<Self, LabError> {
        let underlay = Underlay::new(tag)?;
        let host = |i: usize| -> Result<Host, LabError> {
            let host = site_host(&underlay, i)?;
            let (ns, port) = (host.ns(), host.underlay_if());
            ns.run(&["ip", "addr", "flush", "dev", port])?;
            ns.run(&["ip", "link", "set", port, "master", BRIDGE])?;
            ns.run(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", host.ip()),
                "dev",
                BRIDGE,
            ])?;
            Ok(host)
        };
        let hosts = [host(0)?, host(1)?];
        let user = hosts[1].add_vm("user", BRIDGE, &vm_mac(USER), vm_ip(USER), 24)?;
        Ok(Self {
            user,
            hosts,
            _underlay: underlay,
        })
    }
}

/// What a setting's hosts and user are built from.
enum Bed {
    Lan(Lan),
    Vxlan(Scenario),
    VxlanWg(Cluster),
}

/// A setting's test-bed: hosts A (index 0) and B (index 1), each with bridge
/// [`BRIDGE`], and the user's VM at B's site (its [`GuestSites`]).
pub struct Testbed {
    bed: Bed,
    migration_addrs: [Ipv4Addr; 2],
}

impl Testbed {
    /// Builds `setting`'s test-bed; `wan_delay` is the RTT of the WAN in
    /// `vxlan-wg`.
    pub fn build(setting: Setting, wan_delay: Duration, vlnet: &Path) -> Result<Self, LabError> {
        let tag = setting.tag();
        let underlay = [host_ip(0), host_ip(1)];
        Ok(match setting {
            Setting::Lan => Self {
                bed: Bed::Lan(Lan::build(tag)?),
                migration_addrs: underlay,
            },
            Setting::Vxlan => {
                let vtep = Vtep::Vlnet(Datapath::Tc);
                Self {
                    bed: Bed::Vxlan(Scenario::build(tag, &[vtep, vtep], vlnet)?),
                    migration_addrs: underlay,
                }
            }
            Setting::VxlanWg => {
                let place = if wan_delay.is_zero() {
                    Place::PublicClient
                } else {
                    Place::PublicClientBehind(wan_delay / 2)
                };
                // The migration stream runs between the tunnel addresses:
                // both nodes open its port to members.
                let options = ClusterOptions {
                    open_ports: vec![migration_open_port()],
                    ..ClusterOptions::default()
                };
                let cluster = Cluster::build_with(tag, &[place], &options, vlnet)?;
                cluster.wait_connected()?;
                let migration_addrs = [cluster.tunnel_addr(0)?, cluster.tunnel_addr(1)?];
                Self {
                    bed: Bed::VxlanWg(cluster),
                    migration_addrs,
                }
            }
        })
    }
}

impl GuestSites for Testbed {
    fn host(&self, side: usize) -> &Host {
        match &self.bed {
            Bed::Lan(lan) => &lan.hosts[side],
            Bed::Vxlan(s) => &s.sites[side].host,
            Bed::VxlanWg(c) => c.nodes[side].site.host(),
        }
    }

    fn migration_addr(&self, side: usize) -> Ipv4Addr {
        self.migration_addrs[side]
    }

    fn user(&self) -> &Vm {
        match &self.bed {
            Bed::Lan(lan) => &lan.user,
            Bed::Vxlan(s) => &s.sites[USER].vm,
            Bed::VxlanWg(c) => &c.nodes[USER].vm,
        }
    }

    /// Through WireGuard the operator lets the member take the guest's MAC
    /// before it moves there; the other settings have no control plane.
    fn authorize_move(&self, side: usize) -> Result<(), LabError> {
        match &self.bed {
            Bed::VxlanWg(c) if side == 1 => c.grant_move(side, GUEST_MAC),
            _ => Ok(()),
        }
    }
}
