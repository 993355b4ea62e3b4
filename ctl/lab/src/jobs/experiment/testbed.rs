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
use crate::beds::bed::{missing, Bed, SiteKind, SiteSpec};
use crate::beds::cluster::{Cluster, ClusterOptions, Place};
use crate::beds::guest::{migration_open_port, GuestSites, GUEST_MAC};
use crate::beds::scenario::host_ip;
use crate::primitives::topology::{Host, Underlay, Vm};
use crate::{Datapath, LabError};

/// Site index of the user's VM in every test-bed (its address is
/// [`vm_ip`](crate::beds::scenario::vm_ip) of it).
const USER: usize = 1;

/// What a setting's hosts and user are built from.
enum Sites {
    /// `lan` and `vxlan`: the user's VM, taken from site B, and two sites
    /// on one switch.
    Switch { user: Vm, bed: Bed<Underlay> },
    /// `vxlan-wg`: a controller and one member across the WAN.
    VxlanWg(Cluster),
}

/// Two sites of `kind` on one switch (`lan`, `vxlan`), the user's VM at B's
/// taken out of the bed.
fn switch_bed(tag: &str, kind: SiteKind, vlnet: &Path) -> Result<Sites, LabError> {
    let mut bed = Bed::<Underlay>::builder(tag)
        .vlnet(vlnet)
        .site(SiteSpec::numbered(0, kind))
        .site(SiteSpec::numbered(USER, kind).with_vm("user", USER))
        .build()?;
    let user = bed.sites[USER]
        .vm
        .take()
        .ok_or_else(|| missing("user VM", kind))?;
    Ok(Sites::Switch { user, bed })
}

/// A setting's test-bed: hosts A (index 0) and B (index 1), each with bridge
/// [`BRIDGE`](crate::beds::scenario::BRIDGE), and the user's VM at B's site (its [`GuestSites`]).
pub struct Testbed {
    sites: Sites,
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
                sites: switch_bed(tag, SiteKind::LanBridged, vlnet)?,
                migration_addrs: underlay,
            },
            Setting::Vxlan => Self {
                sites: switch_bed(tag, SiteKind::Vlnet(Datapath::Tc), vlnet)?,
                migration_addrs: underlay,
            },
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
                    sites: Sites::VxlanWg(cluster),
                    migration_addrs,
                }
            }
        })
    }
}

impl GuestSites for Testbed {
    fn host(&self, side: usize) -> &Host {
        match &self.sites {
            Sites::Switch { bed, .. } => &bed.sites[side].seat,
            Sites::VxlanWg(c) => c.nodes[side].site.host(),
        }
    }

    fn migration_addr(&self, side: usize) -> Ipv4Addr {
        self.migration_addrs[side]
    }

    fn user(&self) -> &Vm {
        match &self.sites {
            Sites::Switch { user, .. } => user,
            Sites::VxlanWg(c) => &c.nodes[USER].vm,
        }
    }

    /// Through WireGuard the operator lets the member take the guest's MAC
    /// before it moves there; the other settings have no control plane.
    fn authorize_move(&self, side: usize) -> Result<(), LabError> {
        match &self.sites {
            Sites::VxlanWg(c) if side == 1 => c.grant_move(side, GUEST_MAC),
            _ => Ok(()),
        }
    }
}
