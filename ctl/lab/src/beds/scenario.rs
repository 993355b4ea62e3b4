//! Ready-made test-beds: N sites on one underlay, each a host with a bridge
//! and one VM, and either a vlnet node or the kernel's vxlan driver as VTEP,
//! every VTEP a static peer of all the others: a preset of the
//! [`Bed`] builder. Also the address plan every bed's sites share
//! ([`host_ip`], [`vm_ip`], [`vm_mac`], [`VNI`] on [`BRIDGE`]). Used by
//! `vlnet lab bench`, the migration job and the integration tests.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::beds::bed::{missing, Bed, SiteKind, SiteSpec};
use crate::primitives::daemon::{Daemon, Datapath, Launch};
use crate::primitives::netns::LabError;
use crate::primitives::topology::{Host, Underlay, Vm};

/// The VNI every scenario uses.
pub const VNI: u32 = 100;
/// The bridge every host uses for [`VNI`].
pub const BRIDGE: &str = "br100";

/// What terminates VXLAN at a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vtep {
    /// A vlnet node with this decap data path.
    Vlnet(Datapath),
    /// The kernel's vxlan driver, as an unmodified Proxmox node runs it.
    Kernel,
}

/// One site: a host, its VM, and (for vlnet) its daemon.
pub struct Site {
    /// The vlnet daemon, if the site runs vlnet (dropped first: teardown).
    pub daemon: Option<Daemon>,
    /// The VM hanging on the host's bridge.
    pub vm: Vm,
    /// The host namespace on the underlay.
    pub host: Host,
    /// What terminates VXLAN here.
    pub vtep: Vtep,
}

/// Sites on one underlay switch.
pub struct Scenario {
    /// The sites, in the order asked for (host i has 198.18.0.(i+1)).
    pub sites: Vec<Site>,
    /// The switch (dropped last).
    pub underlay: Underlay,
}

/// Underlay address of site `i`.
#[must_use]
pub fn host_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 1 + i as u8)
}

/// Overlay address of site `i`'s VM.
#[must_use]
pub fn vm_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 1 + i as u8)
}

/// MAC of site `i`'s VM.
#[must_use]
pub fn vm_mac(i: usize) -> String {
    format!("02:00:00:00:01:{:02x}", i + 1)
}

/// Choices [`Scenario::build_with`] offers beyond the VTEPs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScenarioOptions {
    /// vlnet nodes run without flow tracking (the bench's reference for
    /// its cost).
    pub no_flow_tracking: bool,
    /// Turn tx checksum offload off on every host's underlay even when no
    /// site decapsulates at XDP (a kernel-vxlan reference for XDP runs).
    pub tx_checksum_off: bool,
    /// How vlnet daemons are started.
    pub launch: Launch,
    /// vlnet nodes turn the bridge bypass on.
    pub bypass: bool,
}

impl Scenario {
    /// Builds one site per entry of `vteps`, every VTEP peering with all the
    /// others on [`VNI`]. When any site decapsulates at XDP, every host sends
    /// with full checksums (tx offload off), as a real wire delivers them.
    pub fn build(tag: &str, vteps: &[Vtep], vlnet_binary: &Path) -> Result<Self, LabError> {
        Self::build_with(tag, vteps, vlnet_binary, ScenarioOptions::default())
    }

    /// [`build`](Self::build) with [`ScenarioOptions`].
    pub fn build_with(
        tag: &str,
        vteps: &[Vtep],
        vlnet_binary: &Path,
        options: ScenarioOptions,
    ) -> Result<Self, LabError> {
        let mut builder = Bed::<Underlay>::builder(tag)
            .vlnet(vlnet_binary)
            .launch(options.launch);
        if options.no_flow_tracking {
            builder = builder.no_flow_tracking();
        }
        if options.tx_checksum_off {
            builder = builder.tx_checksum_off();
        }
        if options.bypass {
            builder = builder.bypass();
        }
        for (i, vtep) in vteps.iter().enumerate() {
            let kind = match vtep {
                Vtep::Kernel => SiteKind::KernelVxlan,
                Vtep::Vlnet(datapath) => SiteKind::Vlnet(*datapath),
            };
            builder = builder.site(SiteSpec::numbered(i, kind).with_vm(&format!("vm{i}"), i));
        }
        let bed = builder.build()?;
        let sites = bed
            .sites
            .into_iter()
            .zip(vteps)
            .map(|(s, vtep)| {
                Ok(Site {
                    daemon: s.daemon,
                    vm: s.vm.ok_or_else(|| missing("VM", s.kind))?,
                    host: s.seat,
                    vtep: *vtep,
                })
            })
            .collect::<Result<_, LabError>>()?;
        Ok(Self {
            sites,
            underlay: bed.net,
        })
    }
}
