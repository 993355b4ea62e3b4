//! [`Bed`], the one test-bed builder: a network (an [`Underlay`] switch or a
//! [`Wan`]) and sites on it, each a host of a [`SiteKind`] with, if asked
//! for, one VM on bridge [`BRIDGE`].
//!
//! ```text
//! Bed::<Underlay>::builder("tag")
//!     .vlnet(binary)
//!     .site(SiteSpec::numbered(0, SiteKind::Vlnet(Datapath::Tc)).with_vm("vm0", 0))
//!     .site(SiteSpec::numbered(1, SiteKind::KernelVxlan).with_vm("vm1", 1))
//!     .build()?
//! ```
//!
//! [`build`](BedBuilder::build) makes the network, then every site's host
//! (and its bridge), the wireguard-go tunnel if there are [`SiteKind::Wggo`]
//! sites, then every site's VM and VTEP, and waits until every vlnet node
//! has resolved its peers' next hops. Bed-wide rules:
//! - The static peers are the sites of kind [`KernelVxlan`](SiteKind::KernelVxlan),
//!   [`Vlnet`](SiteKind::Vlnet) and [`Controller`](SiteKind::Controller):
//!   each lists all the others on [`VNI`], as Proxmox writes a zone's peers.
//! - When any site decapsulates at XDP (or [`BedBuilder::tx_checksum_off`]
//!   says so), every host sends with full checksums (tx offload off), as a
//!   real wire delivers them.
//! - When any site's VXLAN may travel in WireGuard (wireguard-go, a
//!   controller or a member), every VM has MTU [`SECURE_VM_MTU`].
//!
//! Everything is a guard: dropping the [`Bed`] (or a site taken from it)
//! removes it, daemons first, the network last. The ready-made beds are
//! presets of it: [`Scenario`](crate::beds::scenario::Scenario),
//! [`WggoPair`](crate::beds::wggo_pair::WggoPair),
//! [`Cluster`](crate::beds::cluster::Cluster), the experiment's LAN and the
//! bench's plain pair.

use std::marker::PhantomData;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::beds::cluster::{SECURE_VM_MTU, TUNNEL_POOL};
use crate::beds::scenario::{vm_ip, vm_mac, BRIDGE, VNI};
use crate::beds::wan::{Site, Wan, WanLink};
use crate::beds::wggo_pair;
use crate::primitives::daemon::{Daemon, Datapath, Launch, NodeSpec};
use crate::primitives::netns::LabError;
use crate::primitives::topology::{Host, Underlay, Vm};
use crate::primitives::wggo::WireguardGo;

/// Longest wait for vlnet nodes to resolve their peers.
const NEXT_HOP_WAIT: Duration = Duration::from_secs(10);

/// What a site's host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteKind {
    /// A bare host on the network: no bridge, no VTEP.
    Plain,
    /// A host whose bridge [`BRIDGE`] enslaves its underlay port and holds
    /// its address: the sites share one L2 LAN, no tunnel.
    LanBridged,
    /// The kernel's vxlan driver, as an unmodified Proxmox node runs it; a
    /// static peer.
    KernelVxlan,
    /// A vlnet node with this decap data path; a static peer.
    Vlnet(Datapath),
    /// A vlnet controller (tunnel pool [`TUNNEL_POOL`]) with this data
    /// path; a static peer (the gateway of the kernel-vxlan sites).
    Controller(Datapath),
    /// A vlnet member with this data path, no static peers: it joins the
    /// controller by token (see [`Cluster`](crate::beds::cluster::Cluster)).
    Member(Datapath),
    /// Kernel vxlan over a wireguard-go tunnel to the bed's other `Wggo`
    /// site (a bed has none or two; see
    /// [`wggo_pair`](crate::beds::wggo_pair)).
    Wggo,
}

impl SiteKind {
    /// Whether the site lists the other static peers and is listed by them.
    fn is_static_peer(self) -> bool {
        matches!(
            self,
            Self::KernelVxlan | Self::Vlnet(_) | Self::Controller(_)
        )
    }

    /// The vlnet node's data path, if the site runs one.
    fn datapath(self) -> Option<Datapath> {
        match self {
            Self::Vlnet(d) | Self::Controller(d) | Self::Member(d) => Some(d),
            _ => None,
        }
    }

    /// Whether the site's VXLAN may travel inside WireGuard.
    fn is_encrypted(self) -> bool {
        matches!(self, Self::Wggo | Self::Controller(_) | Self::Member(_))
    }
}

/// Where a site's host sits on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// On the switch (or the [`Wan`]'s cloud LAN) at 198.18.0.`n`.
    Lan(u8),
    /// A [`Wan`] client with a public address on a WAN link built as said.
    PublicClient(WanLink),
    /// A [`Wan`] client behind a masquerading home router.
    NattedClient,
}

/// One site to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSpec {
    /// The host's label: namespace `vlt-<tag>-<label>-…`.
    pub label: String,
    /// The vlnet node's name prefix, if the site runs one.
    pub node: String,
    /// Where the host sits.
    pub at: At,
    /// What it runs.
    pub kind: SiteKind,
    /// Its VM on [`BRIDGE`], if any: label and index (the VM has
    /// [`vm_mac`] and [`vm_ip`] of the index).
    pub vm: Option<(String, usize)>,
}

impl SiteSpec {
    /// A host `label` at `at` running `kind`, its node (if any) named after
    /// it, without a VM.
    #[must_use]
    pub fn new(label: &str, at: At, kind: SiteKind) -> Self {
        Self {
            label: label.to_owned(),
            node: label.to_owned(),
            at,
            kind,
            vm: None,
        }
    }

    /// Site `i` of a switch bed: host `h<i>` at 198.18.0.(i+1) (see
    /// [`host_ip`](crate::beds::scenario::host_ip)), node `n<i>`.
    #[must_use]
    pub fn numbered(i: usize, kind: SiteKind) -> Self {
        Self::new(&format!("h{i}"), At::Lan(1 + i as u8), kind).named(&format!("n{i}"))
    }

    /// Names the vlnet node `node`.
    #[must_use]
    pub fn named(mut self, node: &str) -> Self {
        node.clone_into(&mut self.node);
        self
    }

    /// Adds a VM `label` with [`vm_mac`] and [`vm_ip`] of `index`.
    #[must_use]
    pub fn with_vm(mut self, label: &str, index: usize) -> Self {
        self.vm = Some((label.to_owned(), index));
        self
    }
}

/// A network the bed's hosts sit on.
pub trait Network: Sized {
    /// What a host on it is: a [`Host`], or a [`Wan`]'s [`Site`].
    type Seat: AsRef<Host>;

    /// Creates it, its namespaces named `vlt-<tag>-…`.
    fn create(tag: &str) -> Result<Self, LabError>;

    /// A host `label` at `at`.
    fn seat(&self, label: &str, at: At) -> Result<Self::Seat, LabError>;
}

/// Address 198.18.0.`n` on the switch or the cloud LAN.
fn lan_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

impl Network for Underlay {
    type Seat = Host;

    fn create(tag: &str) -> Result<Self, LabError> {
        Self::new(tag)
    }

    fn seat(&self, label: &str, at: At) -> Result<Host, LabError> {
        match at {
            At::Lan(n) => self.add_host(label, lan_ip(n)),
            At::PublicClient(_) | At::NattedClient => Err(LabError::Invalid(format!(
                "host {label}: WAN clients need a Bed<Wan>"
            ))),
        }
    }
}

impl Network for Wan {
    type Seat = Site;

    fn create(tag: &str) -> Result<Self, LabError> {
        Self::new(tag)
    }

    fn seat(&self, label: &str, at: At) -> Result<Site, LabError> {
        Ok(match at {
            At::Lan(n) => Site::Cloud(self.add_cloud_host(label, n)?),
            At::PublicClient(link) => Site::Client(self.add_public_client_with(label, link)?),
            At::NattedClient => Site::Client(self.add_natted_client(label)?),
        })
    }
}

/// One built site (dropped in field order: daemon, VM, tunnel, host).
#[derive(Debug)]
pub struct BedSite<S> {
    /// The vlnet daemon, if the site runs one.
    pub daemon: Option<Daemon>,
    /// The VM on [`BRIDGE`], if asked for.
    pub vm: Option<Vm>,
    /// The wireguard-go interface of a [`SiteKind::Wggo`] site.
    pub wg: Option<WireguardGo>,
    /// The host.
    pub seat: S,
    /// What it runs.
    pub kind: SiteKind,
}

/// The error for a site the bed built without a part a preset expects.
pub(crate) fn missing(part: &str, kind: SiteKind) -> LabError {
    LabError::Invalid(format!("a {kind:?} site was built without its {part}"))
}

/// What every vlnet node of a bed turns off or on beyond the defaults.
#[derive(Debug, Clone, Copy, Default)]
struct NodeSwitches {
    no_flow_tracking: bool,
    bypass: bool,
}

/// The bed-wide choices every site is built with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    vlnet_binary: Option<PathBuf>,
    tx_checksum_off: bool,
    secure_mtu: bool,
    switches: NodeSwitches,
    launch: Launch,
    open_ports: Vec<String>,
    member_limit: Option<u32>,
    evpn: Option<ControllerEvpn>,
}

/// A controller's `[evpn]`: the gateway between an EVPN zone and its
/// members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerEvpn {
    /// The AS number.
    pub asn: u32,
    /// The route reflectors.
    pub neighbors: Vec<Ipv4Addr>,
    /// `direct`: networks in which a member's own address is its MACs'
    /// next hop.
    pub direct: Vec<String>,
}

impl Settings {
    /// Builds one more site on a built bed's `net`: its host, bridge, VM
    /// and VTEP, without static peers (a member; not a [`SiteKind::Wggo`]
    /// site: those come in a pair, built with the bed).
    pub(crate) fn site<N: Network>(
        &self,
        net: &N,
        spec: &SiteSpec,
    ) -> Result<BedSite<N::Seat>, LabError> {
        let seat = self.seat(net, spec)?;
        self.finish(spec, seat, None, &[])
    }

    /// The site's host on `net`, its tx offload and its bridge.
    fn seat<N: Network>(&self, net: &N, spec: &SiteSpec) -> Result<N::Seat, LabError> {
        let seat = net.seat(&spec.label, spec.at)?;
        let host = seat.as_ref();
        if self.tx_checksum_off {
            host.tx_checksum_off(host.underlay_if())?;
        }
        match spec.kind {
            SiteKind::Plain => {}
            SiteKind::LanBridged => bridge_underlay(host)?,
            _ => host.add_bridge(BRIDGE)?,
        }
        Ok(seat)
    }

    /// The site's VM and VTEP; `wg` is a [`SiteKind::Wggo`] site's tunnel
    /// and its index in the pair.
    fn finish<S: AsRef<Host>>(
        &self,
        spec: &SiteSpec,
        seat: S,
        wg: Option<(WireguardGo, usize)>,
        static_peers: &[Ipv4Addr],
    ) -> Result<BedSite<S>, LabError> {
        let host = seat.as_ref();
        let vm = match &spec.vm {
            Some((label, index)) => {
                let vm = host.add_vm(label, BRIDGE, &vm_mac(*index), vm_ip(*index), 24)?;
                if self.secure_mtu {
                    vm.set_mtu(SECURE_VM_MTU)?;
                }
                Some(vm)
            }
            None => None,
        };
        let peers: Vec<Ipv4Addr> = static_peers
            .iter()
            .copied()
            .filter(|ip| *ip != host.ip())
            .collect();
        let mut tunnel = None;
        let mut daemon = None;
        match spec.kind {
            SiteKind::Plain | SiteKind::LanBridged => {}
            SiteKind::KernelVxlan => {
                host.add_kernel_vxlan(VNI, BRIDGE, &peers)?;
            }
            SiteKind::Wggo => {
                let (wg, i) = wg.ok_or_else(|| {
                    LabError::Invalid("wireguard-go sites come in a pair built at once".into())
                })?;
                wggo_pair::vxlan_over(host, &wg, i)?;
                tunnel = Some(wg);
            }
            SiteKind::Vlnet(datapath)
            | SiteKind::Controller(datapath)
            | SiteKind::Member(datapath) => {
                daemon = Some(self.daemon(spec, datapath, host, &peers)?);
            }
        }
        Ok(BedSite {
            daemon,
            vm,
            wg: tunnel,
            seat,
            kind: spec.kind,
        })
    }

    /// Starts the site's vlnet node on `host` with `peers` on [`VNI`].
    fn daemon(
        &self,
        spec: &SiteSpec,
        datapath: Datapath,
        host: &Host,
        peers: &[Ipv4Addr],
    ) -> Result<Daemon, LabError> {
        let binary = self.vlnet_binary.as_deref().ok_or_else(|| {
            LabError::Invalid(format!(
                "site {}: a vlnet site needs the vlnet binary (BedBuilder::vlnet)",
                spec.label
            ))
        })?;
        let mut node = NodeSpec::new(&spec.node, host.ip()).with_vni(VNI, BRIDGE, peers);
        match spec.kind {
            SiteKind::Controller(_) => {
                node = node.as_controller(TUNNEL_POOL);
                if let Some(limit) = self.member_limit {
                    node = node.with_member_limit(limit);
                }
                if let Some(evpn) = &self.evpn {
                    node = node
                        .with_evpn(evpn.asn, &evpn.neighbors)
                        .with_evpn_direct(&evpn.direct);
                }
            }
            SiteKind::Member(_) => node = node.as_member(),
            _ => {}
        }
        let open: Vec<&str> = self.open_ports.iter().map(String::as_str).collect();
        let node = node
            .with_open_ports(&open)
            .with_datapath(datapath)
            .with_flow_tracking(!self.switches.no_flow_tracking)
            .with_bypass(self.switches.bypass);
        Daemon::start_with(host.ns(), node, binary, self.launch)
    }
}

/// Moves `host`'s underlay address onto its new bridge [`BRIDGE`], which
/// enslaves the underlay port.
fn bridge_underlay(host: &Host) -> Result<(), LabError> {
    host.add_bridge(BRIDGE)?;
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
    ])
    .map(drop)
}

/// Sites on a network `N` (an [`Underlay`] or a [`Wan`]).
#[derive(Debug)]
pub struct Bed<N: Network> {
    /// The sites, in the order they were asked for (dropped first).
    pub sites: Vec<BedSite<N::Seat>>,
    /// The network (dropped last).
    pub net: N,
    /// What later sites are built with (see [`Settings::site`]).
    pub(crate) settings: Settings,
}

/// What a [`Bed`] will be: its tag, its sites and bed-wide choices.
#[derive(Debug)]
pub struct BedBuilder<N> {
    tag: String,
    sites: Vec<SiteSpec>,
    settings: Settings,
    net: PhantomData<N>,
}

impl<N: Network> Bed<N> {
    /// A bed whose namespaces are named `vlt-<tag>-…`, with no sites yet.
    #[must_use]
    pub fn builder(tag: &str) -> BedBuilder<N> {
        BedBuilder {
            tag: tag.to_owned(),
            sites: Vec::new(),
            settings: Settings::default(),
            net: PhantomData,
        }
    }

    /// Waits (bounded) until every vlnet node has resolved its peers' next
    /// hops: nodes start one after another, so the first ones may have
    /// looked before their peers answered.
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

impl<N: Network> BedBuilder<N> {
    /// Adds a site.
    #[must_use]
    pub fn site(mut self, spec: SiteSpec) -> Self {
        self.sites.push(spec);
        self
    }

    /// The `vlnet` binary vlnet sites run.
    #[must_use]
    pub fn vlnet(mut self, binary: &Path) -> Self {
        self.settings.vlnet_binary = Some(binary.to_owned());
        self
    }

    /// Turns tx checksum offload off on every host's underlay even when no
    /// site decapsulates at XDP (a kernel-vxlan reference for XDP runs).
    #[must_use]
    pub fn tx_checksum_off(mut self) -> Self {
        self.settings.tx_checksum_off = true;
        self
    }

    /// vlnet nodes run without flow tracking (the bench's reference for its
    /// cost).
    #[must_use]
    pub fn no_flow_tracking(mut self) -> Self {
        self.settings.switches.no_flow_tracking = true;
        self
    }

    /// vlnet nodes turn the bridge bypass on (`bypass = true` on [`VNI`]).
    #[must_use]
    pub fn bypass(mut self) -> Self {
        self.settings.switches.bypass = true;
        self
    }

    /// How vlnet daemons are started.
    #[must_use]
    pub fn launch(mut self, launch: Launch) -> Self {
        self.settings.launch = launch;
        self
    }

    /// Host ports every vlnet node opens to members through the tunnel
    /// (`[wireguard] open_ports`, e.g. `"tcp/4444"`).
    #[must_use]
    pub fn open_ports(mut self, ports: &[String]) -> Self {
        self.settings.open_ports = ports.to_vec();
        self
    }

    /// The controller's `max_members_per_vni` (its default if `None`).
    #[must_use]
    pub fn member_limit(mut self, limit: Option<u32>) -> Self {
        self.settings.member_limit = limit;
        self
    }

    /// The controller's `[evpn]`, its VNI EVPN-controlled (it is then the gateway between EVPN and its
    /// members; give it no static peers).
    #[must_use]
    pub fn controller_evpn(mut self, evpn: Option<ControllerEvpn>) -> Self {
        self.settings.evpn = evpn;
        self
    }

    /// Builds the network and every site (see the [module](self) docs for
    /// the order and the bed-wide rules).
    pub fn build(self) -> Result<Bed<N>, LabError> {
        let Self {
            tag,
            sites: specs,
            mut settings,
            ..
        } = self;
        settings.tx_checksum_off |= specs
            .iter()
            .any(|s| s.kind.datapath() == Some(Datapath::Xdp));
        settings.secure_mtu = specs.iter().any(|s| s.kind.is_encrypted());
        let static_peers = specs
            .iter()
            .filter(|s| s.kind.is_static_peer())
            .map(|s| match s.at {
                At::Lan(n) => Ok(lan_ip(n)),
                _ => Err(LabError::Invalid(format!(
                    "site {}: a static peer sits on the LAN",
                    s.label
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let net = N::create(&tag)?;
        let seats = specs
            .iter()
            .map(|spec| settings.seat(&net, spec))
            .collect::<Result<Vec<_>, _>>()?;
        let tunnels = tunnels(&specs, &seats)?;
        let mut sites = Vec::with_capacity(specs.len());
        for ((spec, seat), wg) in specs.iter().zip(seats).zip(tunnels) {
            sites.push(settings.finish(spec, seat, wg, &static_peers)?);
        }
        let bed = Bed {
            sites,
            net,
            settings,
        };
        bed.wait_for_next_hops()?;
        Ok(bed)
    }
}

/// The wireguard-go tunnel between the [`SiteKind::Wggo`] sites, if there
/// are two: for each site, its interface and its end of the pair.
fn tunnels<S: AsRef<Host>>(
    specs: &[SiteSpec],
    seats: &[S],
) -> Result<Vec<Option<(WireguardGo, usize)>>, LabError> {
    let mut tunnels: Vec<Option<(WireguardGo, usize)>> = specs.iter().map(|_| None).collect();
    let ends: Vec<usize> = specs
        .iter()
        .enumerate()
        .filter(|(_, spec)| spec.kind == SiteKind::Wggo)
        .map(|(i, _)| i)
        .collect();
    match ends[..] {
        [] => {}
        [a, b] => {
            let [wa, wb] = wggo_pair::tunnel([seats[a].as_ref(), seats[b].as_ref()])?;
            tunnels[a] = Some((wa, 0));
            tunnels[b] = Some((wb, 1));
        }
        _ => {
            return Err(LabError::Invalid(format!(
                "{} wireguard-go sites: a bed has none or two",
                ends.len()
            )))
        }
    }
    Ok(tunnels)
}

impl AsRef<Host> for Host {
    fn as_ref(&self) -> &Host {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beds::scenario::host_ip;

    #[test]
    fn numbered_sites_sit_at_host_ip() {
        for i in 0..5 {
            let spec = SiteSpec::numbered(i, SiteKind::KernelVxlan);
            let At::Lan(n) = spec.at else {
                panic!("site {i} is not on the LAN: {spec:?}");
            };
            assert_eq!(lan_ip(n), host_ip(i));
            assert_eq!(
                (spec.label.as_str(), spec.node.as_str()),
                (&*format!("h{i}"), &*format!("n{i}"))
            );
        }
    }

    #[test]
    fn members_and_wireguard_go_are_no_static_peers() {
        let statics = [
            SiteKind::KernelVxlan,
            SiteKind::Vlnet(Datapath::Xdp),
            SiteKind::Controller(Datapath::Tc),
        ];
        assert!(statics.iter().all(|k| k.is_static_peer()));
        let others = [
            SiteKind::Plain,
            SiteKind::LanBridged,
            SiteKind::Member(Datapath::Tc),
            SiteKind::Wggo,
        ];
        assert!(!others.iter().any(|k| k.is_static_peer()));
        assert!(SiteKind::Member(Datapath::Tc).is_encrypted());
        assert!(!SiteKind::Vlnet(Datapath::Tc).is_encrypted());
    }

    #[test]
    fn a_static_peer_off_the_lan_is_refused_before_anything_is_built() {
        let err = Bed::<Wan>::builder("never")
            .site(SiteSpec::new("c", At::NattedClient, SiteKind::KernelVxlan))
            .build()
            .expect_err("a kernel vxlan behind NAT cannot be a static peer");
        assert!(err.to_string().contains("static peer"), "{err}");
    }
}
