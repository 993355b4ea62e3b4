//! Ready-made test-beds: N sites on one underlay, each a host with a bridge
//! and one VM, and either a vlnet node or the kernel's vxlan driver as VTEP.
//! Used by `vlnet lab demo`, `vlnet lab bench` and the integration tests.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::primitives::daemon::{Daemon, Datapath, Launch, NodeSpec};
use crate::primitives::netns::LabError;
use crate::primitives::topology::{Host, Underlay, Vm};

/// The VNI every scenario uses.
pub const VNI: u32 = 100;
/// The bridge every host uses for [`VNI`].
pub const BRIDGE: &str = "br100";

/// Longest wait for vlnet nodes to resolve their peers.
const NEXT_HOP_WAIT: Duration = Duration::from_secs(10);

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

/// Site `i`'s host on `underlay`: `h<i>` at [`host_ip`]`(i)` with the
/// bridge [`BRIDGE`] (the first step of every two-site bed).
pub fn site_host(underlay: &Underlay, i: usize) -> Result<Host, LabError> {
    let host = underlay.add_host(&format!("h{i}"), host_ip(i))?;
    host.add_bridge(BRIDGE)?;
    Ok(host)
}

/// Site `i`'s VM on `host`'s [`BRIDGE`]: `vm<i>` with [`vm_mac`]`(i)` and
/// [`vm_ip`]`(i)`/24.
pub fn site_vm(host: &Host, i: usize) -> Result<Vm, LabError> {
    host.add_vm(&format!("vm{i}"), BRIDGE, &vm_mac(i), vm_ip(i), 24)
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
        let underlay = Underlay::new(tag)?;
        let any_xdp = options.tx_checksum_off || vteps.contains(&Vtep::Vlnet(Datapath::Xdp));
        let mut sites = Vec::new();
        for (i, vtep) in vteps.iter().enumerate() {
            let host = site_host(&underlay, i)?;
            if any_xdp {
                host.tx_checksum_off(host.underlay_if())?;
            }
            let vm = site_vm(&host, i)?;
            let peers: Vec<Ipv4Addr> = (0..vteps.len()).filter(|j| *j != i).map(host_ip).collect();
            let daemon = match vtep {
                Vtep::Kernel => {
                    host.add_kernel_vxlan(VNI, BRIDGE, &peers)?;
                    None
                }
                Vtep::Vlnet(datapath) => {
                    let spec = NodeSpec::new(&format!("n{i}"), host_ip(i))
                        .with_vni(VNI, BRIDGE, &peers)
                        .with_datapath(*datapath)
                        .with_flow_tracking(!options.no_flow_tracking);
                    Some(Daemon::start_with(
                        host.ns(),
                        spec,
                        vlnet_binary,
                        options.launch,
                    )?)
                }
            };
            sites.push(Site {
                daemon,
                vm,
                host,
                vtep: *vtep,
            });
        }
        let scenario = Self { sites, underlay };
        scenario.wait_for_next_hops()?;
        Ok(scenario)
    }

    /// Waits (bounded) until every vlnet node has resolved its peers' next
    /// hops: hosts come up one after another, so the first ones started
    /// before their peers existed.
    fn wait_for_next_hops(&self) -> Result<(), LabError> {
        let deadline = Instant::now() + NEXT_HOP_WAIT;
        for daemon in self.sites.iter().filter_map(|s| s.daemon.as_ref()) {
            loop {
                let peers: serde_json::Value =
                    serde_json::from_str(&daemon.ctl(&["peers", "--json"])?).map_err(|e| {
                        LabError::Parse {
                            what: "vlnet ctl peers --json".into(),
                            detail: e.to_string(),
                        }
                    })?;
                let pending = peers
                    .as_array()
                    .is_none_or(|all| all.iter().any(|p| p["next_hop"] == "unresolved"));
                if !pending {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(LabError::Invalid(format!(
                        "node {}: peers unresolved after {NEXT_HOP_WAIT:?}: {peers}",
                        daemon.name()
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}
