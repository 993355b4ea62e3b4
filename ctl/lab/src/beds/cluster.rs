//! A vlnet cluster on the [`Wan`] test-bed: a controller and a second cloud
//! node on the cloud LAN, and clients on the far side of the WAN (public or
//! behind a masquerading home router). Every node has bridge [`BRIDGE`] with
//! one VM on VNI [`VNI`]; every node but the controller joins it with an
//! invite token, exactly as an operator would (`vlnet ctl client add` on the
//! controller, `vlnet ctl join` on the node). Optionally the controller is
//! the gateway of a zone of kernel-vxlan nodes ([`KernelPeer`]s), as an
//! unmodified Proxmox SDN VXLAN zone runs them.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::beds::scenario::{site_vm, vm_ip, vm_mac, BRIDGE, VNI};
use crate::beds::wan::{Wan, WanClient, WanLink};
use crate::primitives::daemon::{Daemon, Datapath, NodeSpec};
use crate::primitives::netns::LabError;
use crate::primitives::topology::{Host, Vm};

/// The controller's tunnel address and the pool members get theirs from.
pub const TUNNEL_POOL: &str = "198.19.0.1/24";
/// Overlay MTU through WireGuard on a 1500-byte underlay: 1500 − 80
/// (WireGuard) − 50 (VXLAN).
pub const SECURE_VM_MTU: u32 = 1370;
/// How long [`Cluster::wait_connected`] waits.
const CONNECT_WAIT: Duration = Duration::from_secs(20);
/// How long [`Cluster::wait_placed`] waits.
const PLACE_WAIT: Duration = Duration::from_secs(10);

/// How a [`Cluster`] is built beyond its members' places.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Kernel-vxlan nodes on the cloud LAN, the controller's static peers
    /// (plain VXLAN beside the encrypted members): a Proxmox SDN VXLAN zone
    /// with the controller as one of its nodes. Each lists every other zone
    /// node as a peer, as Proxmox writes them, learning on; the controller
    /// is their gateway to the members. Node `i`'s VM is [`kernel_vm`]`(i)`.
    pub kernel_peers: usize,
    /// Host ports every vlnet node opens to members through the tunnel
    /// (`[wireguard] open_ports`, e.g. `"tcp/4444"`).
    pub open_ports: Vec<String>,
    /// Every vlnet node's decap data path. With XDP every host's underlay
    /// sends full checksums (tx offload off), as a real wire delivers them.
    pub datapath: Datapath,
    /// The controller's `max_members_per_vni` (its default if `None`).
    pub member_limit: Option<u32>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            kernel_peers: 0,
            open_ports: Vec::new(),
            datapath: Datapath::Tc,
            member_limit: None,
        }
    }
}

/// Where a member sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// On the cloud LAN.
    Cloud,
    /// Across the WAN with a public address.
    PublicClient,
    /// Across the WAN behind a masquerading home router.
    NattedClient,
    /// Across the WAN with a public address, on a WAN link that delays each
    /// direction by this much (a [`DelayLine`](crate::DelayLine)).
    PublicClientBehind(Duration),
}

/// The host a node runs on.
pub enum Site {
    /// A cloud host.
    Cloud(Host),
    /// A client across the WAN.
    Client(WanClient),
}

impl Site {
    /// The host.
    #[must_use]
    pub fn host(&self) -> &Host {
        match self {
            Self::Cloud(h) => h,
            Self::Client(c) => c.host(),
        }
    }
}

/// One node: its daemon, VM and host (dropped in that order).
pub struct ClusterNode {
    /// The vlnet daemon.
    pub daemon: Daemon,
    /// Its VM on [`BRIDGE`].
    pub vm: Vm,
    /// Its host.
    pub site: Site,
    /// The name the controller knows it by.
    pub member_name: String,
}

/// A Proxmox-like node on the cloud LAN running the kernel's vxlan driver,
/// a static peer of the controller (not a member).
pub struct KernelPeer {
    /// Its VM on [`BRIDGE`].
    pub vm: Vm,
    /// Its host.
    pub host: Host,
}

/// A controller (node 0) and its members.
pub struct Cluster {
    /// Node 0 is the controller.
    pub nodes: Vec<ClusterNode>,
    /// The kernel-vxlan static peers of the controller, if asked for.
    pub kernels: Vec<KernelPeer>,
    /// The WAN (dropped last).
    pub wan: Wan,
    /// Cloud LAN index of the next cloud member's host.
    next_cloud_index: u8,
    /// What every node is built with.
    options: ClusterOptions,
}

/// Cloud LAN index of the first kernel-vxlan peer's host.
const KERNEL_HOST_INDEX: u8 = 200;
/// Index of the first kernel-vxlan peer's VM (for its MAC and overlay
/// address).
pub const KERNEL_VM: usize = 50;
/// Most kernel-vxlan peers.
const MAX_KERNEL_PEERS: usize = 40;

/// Index of kernel-vxlan peer `i`'s VM.
#[must_use]
pub fn kernel_vm(i: usize) -> usize {
    KERNEL_VM + i
}

/// `options.kernel_peers` kernel-vxlan nodes with a VM each (MTU
/// [`SECURE_VM_MTU`], the zone's MTU when its frames may cross WireGuard),
/// every one listing the others and the controller at `gateway` as static
/// peers.
fn zone(
    wan: &Wan,
    options: &ClusterOptions,
    gateway: Ipv4Addr,
) -> Result<Vec<KernelPeer>, LabError> {
    if options.kernel_peers > MAX_KERNEL_PEERS {
        return Err(LabError::Invalid(format!(
            "{} kernel-vxlan peers: at most {MAX_KERNEL_PEERS}",
            options.kernel_peers
        )));
    }
    let hosts = (0..options.kernel_peers)
        .map(|i| wan.add_cloud_host(&format!("k{i}"), KERNEL_HOST_INDEX + i as u8))
        .collect::<Result<Vec<_>, _>>()?;
    let ips: Vec<Ipv4Addr> = hosts.iter().map(Host::ip).collect();
    hosts
        .into_iter()
        .enumerate()
        .map(|(i, host)| {
            if options.datapath == Datapath::Xdp {
                host.tx_checksum_off(host.underlay_if())?;
            }
            host.add_bridge(BRIDGE)?;
            let n = kernel_vm(i);
            let vm = host.add_vm(&format!("kvm{i}"), BRIDGE, &vm_mac(n), vm_ip(n), 24)?;
            vm.set_mtu(SECURE_VM_MTU)?;
            let peers: Vec<Ipv4Addr> = std::iter::once(gateway)
                .chain(ips.iter().copied().filter(|ip| *ip != host.ip()))
                .collect();
            host.add_kernel_vxlan(VNI, BRIDGE, &peers)?;
            Ok(KernelPeer { vm, host })
        })
        .collect()
}

impl Cluster {
    /// Builds the controller and one member per entry of `members`, and
    /// joins each with a fresh token.
    pub fn build(tag: &str, members: &[Place], vlnet_binary: &Path) -> Result<Self, LabError> {
        Self::build_with(tag, members, &ClusterOptions::default(), vlnet_binary)
    }

    /// [`build`](Self::build) with [`ClusterOptions`].
    pub fn build_with(
        tag: &str,
        members: &[Place],
        options: &ClusterOptions,
        vlnet_binary: &Path,
    ) -> Result<Self, LabError> {
        let wan = Wan::new(tag)?;
        let controller_host = wan.add_cloud_host("ctl", 1)?;
        let kernels = zone(&wan, options, controller_host.ip())?;
        let static_peers: Vec<Ipv4Addr> = kernels.iter().map(|k| k.host.ip()).collect();
        let mut spec = NodeSpec::new("ctl", controller_host.ip())
            .with_vni(VNI, BRIDGE, &static_peers)
            .as_controller(TUNNEL_POOL);
        if let Some(limit) = options.member_limit {
            spec = spec.with_member_limit(limit);
        }
        let mut cluster = Self {
            nodes: Vec::new(),
            kernels,
            wan,
            next_cloud_index: 2,
            options: options.clone(),
        };
        let controller =
            cluster.node(Site::Cloud(controller_host), spec, 0, "ctl", vlnet_binary)?;
        cluster.nodes.push(controller);
        for &place in members {
            let n = cluster.add_member(place, vlnet_binary)?;
            cluster.join(n)?;
        }
        Ok(cluster)
    }

    /// Adds a member node at `place` with its VM and a running daemon that
    /// has not joined yet (see [`join`](Self::join)); returns its index.
    pub fn add_member(&mut self, place: Place, vlnet_binary: &Path) -> Result<usize, LabError> {
        let n = self.nodes.len();
        let site = match place {
            Place::Cloud => {
                let index = self.next_cloud_index;
                self.next_cloud_index += 1;
                Site::Cloud(self.wan.add_cloud_host(&format!("c{n}"), index)?)
            }
            Place::PublicClient => Site::Client(self.wan.add_public_client(&format!("p{n}"))?),
            Place::NattedClient => Site::Client(self.wan.add_natted_client(&format!("n{n}"))?),
            Place::PublicClientBehind(delay) => Site::Client(
                self.wan
                    .add_public_client_with(&format!("d{n}"), WanLink { delay: Some(delay) })?,
            ),
        };
        let spec = NodeSpec::new(&format!("m{n}"), site.host().ip())
            .with_vni(VNI, BRIDGE, &[])
            .as_member();
        let node = self.node(site, spec, n, &format!("member{n}"), vlnet_binary)?;
        self.nodes.push(node);
        Ok(n)
    }

    /// Node `index` on `site`: `spec` with the cluster's options, its
    /// bridge and VM, its daemon started.
    fn node(
        &self,
        site: Site,
        spec: NodeSpec,
        index: usize,
        member_name: &str,
        vlnet_binary: &Path,
    ) -> Result<ClusterNode, LabError> {
        let host = site.host();
        let open: Vec<&str> = self.options.open_ports.iter().map(String::as_str).collect();
        let spec = spec
            .with_open_ports(&open)
            .with_datapath(self.options.datapath);
        if self.options.datapath == Datapath::Xdp {
            host.tx_checksum_off(host.underlay_if())?;
        }
        host.add_bridge(BRIDGE)?;
        let vm = site_vm(host, index)?;
        vm.set_mtu(SECURE_VM_MTU)?;
        let daemon = Daemon::start(host.ns(), spec, vlnet_binary)?;
        Ok(ClusterNode {
            daemon,
            vm,
            site,
            member_name: member_name.to_owned(),
        })
    }

    /// The controller.
    #[must_use]
    pub fn controller(&self) -> &ClusterNode {
        &self.nodes[0]
    }

    /// Invites node `n` on the controller and joins it with the token.
    pub fn join(&self, n: usize) -> Result<(), LabError> {
        let token = self.invite(&self.nodes[n].member_name, "1h")?;
        self.nodes[n].daemon.join(&token).map(drop)
    }

    /// `vlnet ctl client add NAME --vni 100 --ttl TTL` on the controller.
    pub fn invite(&self, name: &str, ttl: &str) -> Result<String, LabError> {
        let token = self.controller().daemon.ctl(&[
            "client",
            "add",
            name,
            "--vni",
            &VNI.to_string(),
            "--ttl",
            ttl,
        ])?;
        Ok(token.trim().to_owned())
    }

    /// `vlnet ctl vm move MAC --vni 100 --to MEMBER` on the controller: the
    /// operator's one action that lets node `n` take a VM's MAC held
    /// elsewhere (before live-migrating the VM there).
    pub fn grant_move(&self, n: usize, mac: &str) -> Result<(), LabError> {
        self.controller()
            .daemon
            .ctl(&[
                "vm",
                "move",
                mac,
                "--vni",
                &VNI.to_string(),
                "--to",
                &self.nodes[n].member_name,
            ])
            .map(drop)
    }

    /// `vlnet ctl client list --json` on the controller.
    pub fn clients(&self) -> Result<serde_json::Value, LabError> {
        let text = self
            .controller()
            .daemon
            .ctl(&["client", "list", "--json"])?;
        serde_json::from_str(&text).map_err(|e| LabError::Parse {
            what: "vlnet ctl client list --json".into(),
            detail: e.to_string(),
        })
    }

    /// Waits until every member has a control session with the controller.
    pub fn wait_connected(&self) -> Result<(), LabError> {
        let deadline = Instant::now() + CONNECT_WAIT;
        loop {
            let clients = self.clients()?;
            // A spent class invite stays listed (a seat may come back to
            // it); it is no member.
            let all = clients.as_array().is_some_and(|list| {
                let members: Vec<_> = list.iter().filter(|c| c["state"] != "spent").collect();
                members.len() + 1 == self.nodes.len()
                    && members.iter().all(|c| c["state"] == "connected")
            });
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LabError::Invalid(format!(
                    "members not all connected after {CONNECT_WAIT:?}: {clients}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (≤ 10 s) until node `on` places `mac` behind `vtep` in VNI
    /// [`VNI`]'s FDB (the control plane distributes every VM's MAC; a
    /// gateway relays a member's frames only once it holds its route).
    pub fn wait_placed(&self, on: usize, mac: &str, vtep: Ipv4Addr) -> Result<(), LabError> {
        let deadline = Instant::now() + PLACE_WAIT;
        loop {
            let text = self.nodes[on]
                .daemon
                .ctl(&["fdb", "--vni", &VNI.to_string(), "--json"])?;
            let rows: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| LabError::Parse {
                    what: "vlnet ctl fdb --json".into(),
                    detail: e.to_string(),
                })?;
            let placed = rows.as_array().is_some_and(|rows| {
                rows.iter()
                    .any(|r| r["mac"] == mac && r["vtep"] == vtep.to_string())
            });
            if placed {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LabError::Invalid(format!(
                    "node {on} does not place {mac} behind {vtep} after {PLACE_WAIT:?}: {text}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Node `n`'s tunnel address as the controller lists it.
    pub fn tunnel_addr(&self, n: usize) -> Result<Ipv4Addr, LabError> {
        if n == 0 {
            return Ok(Ipv4Addr::new(198, 19, 0, 1));
        }
        let clients = self.clients()?;
        clients
            .as_array()
            .and_then(|l| {
                l.iter()
                    .find(|c| c["name"] == self.nodes[n].member_name.as_str())
            })
            .and_then(|c| c["tunnel_addr"].as_str())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| LabError::Invalid(format!("no tunnel address for node {n}: {clients}")))
    }
}
