//! FRR 8.4 nodes of an EVPN zone in a test's namespaces, on the lab's
//! [`vlnet_lab::primitives::frr`] (zebra and bgpd as Proxmox's EVPN zone
//! runs them, stopped on drop): [`Frr`] is the lab's node with the
//! fallible calls a test makes turned into panics that say what failed,
//! and [`Zone`] / [`FrrNode`] build the zones the EVPN tests share. Needs
//! `/usr/lib/frr/{zebra,bgpd}` and `vtysh`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vlnet_lab::primitives::frr as lab;
use vlnet_lab::primitives::probe;
use vlnet_lab::{Daemon, Host, NodeSpec, Underlay, Vm};

pub use vlnet_lab::primitives::frr::Role;

/// zebra and bgpd of one FRR node (the lab's [`lab::Frr`]; its infallible
/// queries through `Deref`).
pub struct Frr(lab::Frr);

impl Frr {
    /// Starts zebra and bgpd in namespace `ns` as router `router_id` of AS
    /// `asn` in `role`; waits until both answer on their vty sockets.
    pub fn start(ns: &str, asn: u32, router_id: Ipv4Addr, role: Role<'_>) -> Self {
        Self(lab::Frr::start(ns, asn, router_id, role).unwrap_or_else(|e| panic!("FRR: {e}")))
    }

    /// A shell command in FRR's namespace; panics with its output on failure.
    pub fn sh(&self, cmd: &str) -> String {
        self.0.sh(cmd).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A vtysh command's output.
    pub fn vtysh(&self, cmd: &str) -> String {
        self.0.vtysh(cmd).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Kills bgpd (SIGKILL): its sessions drop at once, without a
    /// NOTIFICATION, as when the process crashes. zebra stays.
    pub fn kill_bgpd(&self) {
        self.0.kill_bgpd().unwrap_or_else(|e| panic!("{e}"));
    }
}

impl std::ops::Deref for Frr {
    type Target = lab::Frr;

    fn deref(&self) -> &lab::Frr {
        &self.0
    }
}

/// Adds `vxlan<vni>` (local `local`, UDP 4789) to `bridge` in namespace
/// `ns` as Proxmox's EVPN zone does (see [`lab::add_vxlan`]).
pub fn add_vxlan(ns: &str, vni: u32, bridge: &str, local: Ipv4Addr) {
    lab::add_vxlan(ns, vni, bridge, local).unwrap_or_else(|e| panic!("{e}"));
}

/// The zone the EVPN tests build: one AS, one VNI, its bridge on every node.
#[derive(Debug, Clone, Copy)]
pub struct Zone {
    /// The AS of every node (iBGP).
    pub asn: u32,
    /// The VNI.
    pub vni: u32,
    /// Its bridge on every node.
    pub bridge: &'static str,
}

/// The zone of the EVPN tests against FRR zones: AS 65000, VNI 100 on
/// `vnet100` (Proxmox's vnet naming).
pub const VNI100: Zone = Zone {
    asn: 65000,
    vni: 100,
    bridge: "vnet100",
};

/// An FRR node of a [`Zone`]: its host (namespace, bridge, kernel VXLAN)
/// and its daemons. The daemons stop before the namespace goes.
pub struct FrrNode {
    /// zebra and bgpd.
    pub frr: Frr,
    /// The namespace on the underlay.
    pub host: Host,
}

impl std::ops::Deref for FrrNode {
    type Target = Frr;

    fn deref(&self) -> &Frr {
        &self.frr
    }
}

impl Zone {
    /// A host `label` at `ip` on `underlay` with the zone's bridge (for a
    /// vlnet node).
    pub fn host(&self, underlay: &Underlay, label: &str, ip: Ipv4Addr) -> Host {
        let host = underlay.add_host(label, ip).unwrap();
        host.add_bridge(self.bridge).unwrap();
        host
    }

    /// An FRR node `label` at `ip` (its VTEP and router id) in `role`.
    pub fn frr_node(
        &self,
        underlay: &Underlay,
        label: &str,
        ip: Ipv4Addr,
        role: Role<'_>,
    ) -> FrrNode {
        let host = self.host(underlay, label, ip);
        add_vxlan(host.ns().name(), self.vni, self.bridge, ip);
        FrrNode {
            frr: Frr::start(host.ns().name(), self.asn, ip, role),
            host,
        }
    }

    /// A VM `label` on `host`'s bridge with `mac` and `ip`/24.
    pub fn vm(&self, host: &Host, label: &str, mac: &str, ip: Ipv4Addr) -> Vm {
        host.add_vm(label, self.bridge, mac, ip, 24).unwrap()
    }

    /// A vlnet node `prefix-…` at `vtep` with the zone's VNI on its bridge,
    /// peering with `reflectors`.
    pub fn vlnet_spec(&self, prefix: &str, vtep: Ipv4Addr, reflectors: &[Ipv4Addr]) -> NodeSpec {
        NodeSpec::new(prefix, vtep)
            .with_vni(self.vni, self.bridge, &[])
            .with_evpn(self.asn, reflectors)
    }
}

/// vlnet's `ctl fdb --json`.
pub fn vlnet_fdb(daemon: &Daemon) -> serde_json::Value {
    serde_json::from_str(&daemon.ctl(&["fdb", "--json"]).unwrap()).unwrap()
}

/// Whether `vlnet ctl fdb --json` has `mac` in `vni` behind `vtep`, from
/// the control plane (an EVPN route).
pub fn vlnet_fdb_has(daemon: &Daemon, vni: u32, mac: &str, vtep: Ipv4Addr) -> bool {
    vlnet_fdb(daemon).as_array().unwrap().iter().any(|r| {
        r["mac"] == mac
            && r["vtep"] == vtep.to_string()
            && r["vni"] == vni
            && r["kind"] == "control"
    })
}

/// Pings `to` from `from` once every 200 ms until a reply comes (≤
/// `limit`): the first requests wait for ARP, flooded through the type-3
/// flood lists. Whether a reply came.
pub fn reachable(from: &Vm, to: Ipv4Addr, limit: Duration) -> bool {
    wait_for(limit, || {
        probe::ping(from.ns(), to, 1, Duration::from_millis(200)).is_ok_and(|p| p.received == 1)
    })
}

/// Polls `f` every 100 ms until it holds or `limit` passes; whether it held.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Polls `f` every 100 ms for `period`; whether it held every time.
pub fn holds_for(period: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        if !f() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}
