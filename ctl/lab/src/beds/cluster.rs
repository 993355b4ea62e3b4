//! A vlnet cluster on the [`Wan`] test-bed: a controller and a second cloud
//! node on the cloud LAN, and clients on the far side of the WAN (public or
//! behind a masquerading home router). Every node has bridge [`BRIDGE`](crate::beds::scenario::BRIDGE) with
//! one VM on VNI [`VNI`]; every node but the controller joins it with an
//! invite token, exactly as an operator would (`vlnet ctl client add` on the
//! controller, `vlnet ctl join` on the node). Optionally the controller is
//! the gateway of a zone of kernel-vxlan nodes ([`KernelPeer`]s), as an
//! unmodified Proxmox SDN VXLAN zone runs them. A preset of the [`Bed`]
//! builder on a [`Wan`]: the controller and the zone are built with the
//! bed, members are added to it one by one.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::beds::bed::{missing, At, Bed, BedSite, ControllerEvpn, Settings, SiteKind, SiteSpec};
use crate::beds::scenario::VNI;
pub use crate::beds::wan::Site;
use crate::beds::wan::{Wan, WanLink};
use crate::primitives::daemon::{Daemon, Datapath};
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
    /// The controller's `[evpn]`: the gateway between an EVPN zone and its
    /// members (with no kernel-vxlan peers).
    pub evpn: Option<ControllerEvpn>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            kernel_peers: 0,
            open_ports: Vec::new(),
            datapath: Datapath::Tc,
            member_limit: None,
            evpn: None,
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

/// One node: its daemon, VM and host (dropped in that order).
pub struct ClusterNode {
    /// The vlnet daemon.
    pub daemon: Daemon,
    /// Its VM on [`BRIDGE`](crate::beds::scenario::BRIDGE).
    pub vm: Vm,
    /// Its host.
    pub site: Site,
    /// The name the controller knows it by.
    pub member_name: String,
}

/// A Proxmox-like node on the cloud LAN running the kernel's vxlan driver,
/// a static peer of the controller (not a member).
pub struct KernelPeer {
    /// Its VM on [`BRIDGE`](crate::beds::scenario::BRIDGE).
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
    /// Every vlnet node's data path.
    datapath: Datapath,
    /// What the bed builds members with.
    settings: Settings,
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

/// A cluster node made from a bed's `site`, known to the controller as
/// `member_name`.
fn node(site: BedSite<Site>, member_name: &str) -> Result<ClusterNode, LabError> {
    Ok(ClusterNode {
        daemon: site.daemon.ok_or_else(|| missing("daemon", site.kind))?,
        vm: site.vm.ok_or_else(|| missing("VM", site.kind))?,
        site: site.seat,
        member_name: member_name.to_owned(),
    })
}

/// A kernel-vxlan zone node made from a bed's `site`.
fn kernel_peer(site: BedSite<Site>) -> Result<KernelPeer, LabError> {
    let vm = site.vm.ok_or_else(|| missing("VM", site.kind))?;
    match site.seat {
        Site::Cloud(host) => Ok(KernelPeer { vm, host }),
        Site::Client(_) => Err(LabError::Invalid(
            "a kernel-vxlan zone node is on the cloud LAN".into(),
        )),
    }
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
        if options.kernel_peers > MAX_KERNEL_PEERS {
            return Err(LabError::Invalid(format!(
                "{} kernel-vxlan peers: at most {MAX_KERNEL_PEERS}",
                options.kernel_peers
            )));
        }
        let controller = SiteSpec::new("ctl", At::Lan(1), SiteKind::Controller(options.datapath))
            .with_vm("vm0", 0);
        let mut builder = Bed::<Wan>::builder(tag)
            .vlnet(vlnet_binary)
            .open_ports(&options.open_ports)
            .member_limit(options.member_limit)
            .controller_evpn(options.evpn.clone())
            .site(controller);
        for i in 0..options.kernel_peers {
            let at = At::Lan(KERNEL_HOST_INDEX + i as u8);
            builder = builder.site(
                SiteSpec::new(&format!("k{i}"), at, SiteKind::KernelVxlan)
                    .with_vm(&format!("kvm{i}"), kernel_vm(i)),
            );
        }
        let bed = builder.build()?;
        let mut sites = bed.sites.into_iter();
        let controller = sites
            .next()
            .ok_or_else(|| LabError::Invalid("a cluster bed without its controller".into()))?;
        let mut cluster = Self {
            nodes: vec![node(controller, "ctl")?],
            kernels: sites.map(kernel_peer).collect::<Result<_, _>>()?,
            wan: bed.net,
            next_cloud_index: 2,
            datapath: options.datapath,
            settings: bed.settings,
        };
        for &place in members {
            let n = cluster.add_member(place)?;
            cluster.join(n)?;
        }
        Ok(cluster)
    }

    /// Adds a member node at `place` with its VM and a running daemon that
    /// has not joined yet (see [`join`](Self::join)); returns its index.
    pub fn add_member(&mut self, place: Place) -> Result<usize, LabError> {
        let n = self.nodes.len();
        let (label, at) = match place {
            Place::Cloud => {
                let index = self.next_cloud_index;
                self.next_cloud_index += 1;
                (format!("c{n}"), At::Lan(index))
            }
            Place::PublicClient => (format!("p{n}"), At::PublicClient(WanLink::default())),
            Place::NattedClient => (format!("n{n}"), At::NattedClient),
            Place::PublicClientBehind(delay) => (
                format!("d{n}"),
                At::PublicClient(WanLink { delay: Some(delay) }),
            ),
        };
        let spec = SiteSpec::new(&label, at, SiteKind::Member(self.datapath))
            .named(&format!("m{n}"))
            .with_vm(&format!("vm{n}"), n);
        let site = self.settings.site(&self.wan, &spec)?;
        self.nodes.push(node(site, &format!("member{n}"))?);
        Ok(n)
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
