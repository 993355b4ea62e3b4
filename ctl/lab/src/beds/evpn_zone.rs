//! [`EvpnZone`]: a [`Scenario`] whose vlnet sites have no static peers and
//! learn each other through BGP EVPN instead (`evpn = true` on [`VNI`]):
//! every site peers with one FRR route reflector in its own namespace on
//! the same switch (AS [`ASN`], reflector at [`REFLECTOR`]), which reflects
//! their type-2 (MAC) and type-3 (flood list) routes. The reflector is a
//! route reflector only: no bridge, no VXLAN, no VM. Sites use the
//! scenario's address plan ([`host_ip`], [`vm_ip`], [`vm_mac`]), so the
//! migration job's moves run on it unchanged.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::beds::scenario::{host_ip, vm_ip, vm_mac, Scenario, Site, Vtep, BRIDGE, VNI};
use crate::primitives::daemon::{Daemon, Datapath, NodeSpec};
use crate::primitives::frr::{Frr, Role};
use crate::primitives::netns::LabError;
use crate::primitives::topology::{Host, Underlay};

/// The zone's AS (iBGP between the sites and the reflector).
pub const ASN: u32 = 65000;
/// The route reflector's underlay address and router id.
pub const REFLECTOR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 250);
/// Longest wait for the sessions and the flood lists.
const CONVERGE_LIMIT: Duration = Duration::from_mins(1);
/// Poll period while waiting for them.
const POLL: Duration = Duration::from_millis(100);

/// vlnet sites of an EVPN zone around one FRR route reflector.
pub struct EvpnZone {
    /// The sites and the switch (the daemons go first).
    pub scenario: Scenario,
    /// The route reflector's zebra and bgpd.
    pub frr: Frr,
    /// The route reflector's namespace (dropped last).
    pub reflector: Host,
}

impl EvpnZone {
    /// The switch, the route reflector, then `sites` vlnet sites (TC decap)
    /// each with its VM; returns once the reflector's session with every
    /// site is up and every site floods to all the others (their type-3
    /// routes arrived and their next hops resolved).
    pub fn build(tag: &str, sites: usize, vlnet_binary: &Path) -> Result<Self, LabError> {
        let underlay = Underlay::new(tag)?;
        let reflector = underlay.add_host("rr", REFLECTOR)?;
        let clients: Vec<Ipv4Addr> = (0..sites).map(host_ip).collect();
        let frr = Frr::start(
            reflector.ns().name(),
            ASN,
            REFLECTOR,
            Role::Reflector(&clients),
        )?;
        let mut built = Vec::with_capacity(sites);
        for i in 0..sites {
            let host = underlay.add_host(&format!("h{i}"), host_ip(i))?;
            host.add_bridge(BRIDGE)?;
            let vm = host.add_vm(&format!("vm{i}"), BRIDGE, &vm_mac(i), vm_ip(i), 24)?;
            let spec = NodeSpec::new(&format!("n{i}"), host_ip(i))
                .with_vni(VNI, BRIDGE, &[])
                .with_evpn(ASN, &[REFLECTOR]);
            let daemon = Daemon::start(host.ns(), spec, vlnet_binary)?;
            built.push(Site {
                daemon: Some(daemon),
                vm,
                host,
                vtep: Vtep::Vlnet(Datapath::Tc),
            });
        }
        let zone = Self {
            scenario: Scenario {
                sites: built,
                underlay,
            },
            frr,
            reflector,
        };
        zone.converge()?;
        Ok(zone)
    }

    /// Waits (bounded) until the reflector's sessions are up and each site
    /// lists every other site as a resolved peer.
    fn converge(&self) -> Result<(), LabError> {
        let deadline = Instant::now() + CONVERGE_LIMIT;
        let others = self.scenario.sites.len().saturating_sub(1);
        for (i, site) in self.scenario.sites.iter().enumerate() {
            let Some(daemon) = &site.daemon else {
                continue;
            };
            while !(self.frr.established(host_ip(i)) && floods_to(daemon, others)?) {
                if Instant::now() > deadline {
                    return Err(LabError::Invalid(format!(
                        "EVPN zone: site {i} not converged after {CONVERGE_LIMIT:?}\n\
                         --- peers: {}\n--- reflector:\n{}\n--- node log:\n{}",
                        daemon.ctl(&["peers", "--json"]).unwrap_or_default(),
                        self.frr
                            .vtysh("show bgp l2vpn evpn summary")
                            .unwrap_or_default(),
                        daemon.log_tail(30)
                    )));
                }
                std::thread::sleep(POLL);
            }
        }
        Ok(())
    }
}

/// Whether `daemon` lists at least `count` peers, all resolved.
fn floods_to(daemon: &Daemon, count: usize) -> Result<bool, LabError> {
    let peers: serde_json::Value = serde_json::from_str(&daemon.ctl(&["peers", "--json"])?)
        .map_err(|e| LabError::Parse {
            what: "vlnet ctl peers --json".into(),
            detail: e.to_string(),
        })?;
    Ok(peers
        .as_array()
        .is_some_and(|all| all.len() >= count && all.iter().all(|p| p["next_hop"] != "unresolved")))
}
