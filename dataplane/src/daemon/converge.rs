//! Convergence: links, maps and program links brought to the config merged
//! with what the control plane adds. Convergence is idempotent: it runs at
//! start (after [`super::start`] loaded the programs), on every change of the
//! control plane, when a watched interface changes under the daemon (see
//! [`super::links`]) and on reload.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use aya::programs::XdpMode;
use ipnetwork::Ipv4Network;
use tracing::{info, warn};
use vlnet_ebpf::abi::VLNET_ENCAP_LEN;

use super::links::Expected;
use super::nexthops::resolve_next_hops;
use super::{state_error, DaemonError};
use crate::bpf::{self, Programs};
use crate::capacity::Capacities;
use crate::config::{Config, DatapathSetting, DscpSetting, VniConfig};
use crate::control::Dynamic;
use crate::effective::effective_config;
use crate::maps::{Maps, MapsError};
use crate::model::{DatapathMode, LinkAction, LinkStatus};
use crate::netlink::{enable_gro, LinkSummary, Netlink};
use crate::node::{Node, NodeFacts};
use crate::store::{state_path, NodeState};
use crate::sync::{self, Desired, DesiredVni, OuterHeader};
use crate::trust;

/// Which missing bridges a convergence creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bridges {
    /// Every bridge the config names (start-up, reload, the control plane
    /// granting a VNI).
    Create,
    /// Only those vlnet created itself: a bridge of the host's that
    /// disappeared under the daemon (an SDN apply, `ifreload -a`) is the
    /// host's to bring back; its overlay port rejoins it then.
    OnlyOurs,
}

/// One served VNI (`v`, of the effective config; overlay port
/// `overlay_ifindex`) as the kernel should see it, on the node with VTEP
/// `me`.
fn desired_vni(
    file: &Config,
    dynamic: &Dynamic,
    me: Ipv4Addr,
    v: &VniConfig,
    overlay_ifindex: u32,
) -> DesiredVni {
    let evpn = |by_vni: &BTreeMap<u32, BTreeSet<Ipv4Addr>>| -> Vec<Ipv4Addr> {
        by_vni
            .get(&v.id)
            .into_iter()
            .flatten()
            .copied()
            .filter(|vtep| *vtep != me)
            .collect()
    };
    // The zone: static peers and, on an EVPN VNI, the VTEPs of its type-3
    // routes (a gateway relays its members to both).
    let mut zone = file.vni_peers(v.id).to_vec();
    zone.extend(evpn(&dynamic.evpn.flood));
    // Located, not flooded: the EVPN VTEPs that place MACs without a type-3
    // route, and on a member the gateway advertises with its own address,
    // the zone's VTEPs that send it VXLAN directly.
    let mut located = evpn(&dynamic.evpn.located);
    located.extend(evpn(&dynamic.direct));
    DesiredVni {
        vni: v.id,
        overlay_ifindex,
        peers: zone,
        members: v.peers.clone(),
        located,
        static_fdb: v.static_fdb.iter().map(|s| (s.mac.0, s.vtep)).collect(),
        arp_suppress: file.arp_suppress(v.id),
        bypass: file.bypass(v.id),
        control_only: v.evpn,
    }
}

fn peers_of(cfg: &Config) -> Vec<Ipv4Addr> {
    let set: BTreeSet<Ipv4Addr> = cfg
        .vni
        .iter()
        .flat_map(|v| v.peers.iter().copied())
        .collect();
    set.into_iter().collect()
}

/// A VNI's config with the two ends of its overlay port.
type OverlayPort<'a> = (&'a VniConfig, LinkSummary, LinkSummary);

/// Creates missing bridges as `bridges` allows (remembering them for
/// teardown) and overlay ports, and joins each port to its bridge; records
/// in `expected` what the link watcher should find.
async fn ensure_overlay_ports<'a>(
    cfg: &'a Config,
    nl: &Netlink,
    overlay_mtu: u32,
    bridges: Bridges,
    expected: &mut Expected,
) -> Result<Vec<OverlayPort<'a>>, DaemonError> {
    let state_file = state_path(&cfg.node.state_dir, &cfg.node.name);
    let mut state = NodeState::load(&state_file).map_err(state_error(&state_file))?;
    let mut ports = Vec::new();
    for v in &cfg.vni {
        let ours = state.created_bridges.contains(&v.bridge);
        if (bridges == Bridges::Create || ours) && nl.ensure_bridge(&v.bridge).await? {
            info!(bridge = %v.bridge, "created bridge");
            state.created_bridges.insert(v.bridge.clone());
            state.save(&state_file).map_err(state_error(&state_file))?;
        }
        let bridge = nl.link(&v.bridge).await?;
        if bridge.is_none() {
            warn!(
                bridge = %v.bridge,
                vni = v.id,
                "bridge is gone; the VNI's overlay port rejoins it when it comes back"
            );
        }
        let (port, inner) = nl
            .ensure_overlay_port(v.id, bridge.as_ref(), overlay_mtu)
            .await?;
        expected.watch(&v.bridge, bridge.as_ref().map(|b| (b.index, None)));
        expected.watch(
            &port.name,
            Some((port.index, bridge.as_ref().map(|b| b.index))),
        );
        expected.watch(&inner.name, Some((inner.index, None)));
        ports.push((v, port, inner));
    }
    Ok(ports)
}

/// How long a convergence waits for new overlay ports to be operational.
const PORT_UP_WAIT: Duration = Duration::from_secs(2);

/// Waits (at most [`PORT_UP_WAIT`]) until both ends of every overlay port
/// are operationally up: the kernel enables a new link's queue and its
/// bridge port from its link watch, up to a second after it was brought
/// up, and drops what it is given until then. Readiness and a reload's
/// answer wait for this, so that a VM's first frame finds its path.
async fn await_ports_up(nl: &Netlink, ports: &[OverlayPort<'_>]) {
    let deadline = tokio::time::Instant::now() + PORT_UP_WAIT;
    for name in ports
        .iter()
        .flat_map(|(_, port, inner)| [&port.name, &inner.name])
    {
        while !nl
            .link(name)
            .await
            .ok()
            .flatten()
            .is_some_and(|l| l.oper_up)
        {
            if tokio::time::Instant::now() >= deadline {
                warn!(port = %name, "overlay port not operational yet");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Attaches decap to the underlay (first: the overlay side only sends once
/// it can receive) and encap to every overlay port (in XDP mode also
/// `xdp_overlay_pass` and GRO at the port's bridge end), then detaches pinned
/// links no longer wanted but those named in `keep` (the tunnel's). With
/// `datapath = "auto"` an underlay that refuses native XDP falls back to TC
/// (`to_tc` rewrites the maps for it). A gateway runs TC decap beside XDP:
/// XDP passes it the frames to relay. Returns the mode in use.
fn attach(
    cfg: &Config,
    programs: &mut Programs,
    underlay: &LinkSummary,
    ports: &[OverlayPort<'_>],
    mut datapath: DatapathMode,
    mut keep: HashSet<String>,
    to_tc: impl FnOnce() -> Result<(), MapsError>,
) -> Result<DatapathMode, DaemonError> {
    if datapath == DatapathMode::Xdp {
        let attached = programs.attach_xdp(
            bpf::PROG_XDP_UNDERLAY_RX,
            &underlay.name,
            underlay.index,
            XdpMode::Driver,
        );
        match attached {
            Ok(pin) => {
                keep.insert(pin);
            }
            Err(e) if cfg.node.datapath == DatapathSetting::Auto => {
                warn!(error = %e, "no native XDP on the underlay; using TC");
                datapath = DatapathMode::Tc;
                to_tc()?;
            }
            Err(e) => {
                return Err(DaemonError::Xdp {
                    name: underlay.name.clone(),
                    source: Box::new(e),
                })
            }
        }
    }
    if datapath == DatapathMode::Tc || cfg.is_gateway() {
        keep.insert(programs.attach_tc(
            bpf::PROG_TC_UNDERLAY_RX,
            &underlay.name,
            underlay.index,
        )?);
    }
    for (_, port, inner) in ports {
        keep.insert(programs.attach_tc(bpf::PROG_TC_OVERLAY_TX, &inner.name, inner.index)?);
        if datapath == DatapathMode::Xdp {
            keep.insert(programs.attach_xdp(
                bpf::PROG_XDP_OVERLAY_PASS,
                &port.name,
                port.index,
                XdpMode::Driver,
            )?);
            // XDP decap's frames arrive here one wire segment each: GRO
            // merges them before the bridge (veth starts with it off).
            if let Err(e) = enable_gro(&port.name) {
                warn!(port = %port.name, error = %e, "could not turn GRO on");
            }
        }
    }
    // The bridge bypass owns its links (crate::bypass).
    keep.extend(programs.pin_names(bpf::PROG_TC_VM_TX));
    let pin_dir = programs.pin_dir().to_path_buf();
    let pruned = programs.prune_links(&keep).map_err(state_error(&pin_dir))?;
    if pruned > 0 {
        info!(pruned, "detached links no longer configured");
    }
    Ok(datapath)
}

/// Makes L3 tunnel `tunnel` (a WireGuard TUN) a VXLAN underlay for secure
/// peers: records `local`, our address on it, as the one VXLAN must be sent
/// to, and attaches `tc_tunnel_rx` at its TC ingress (pinned; kept if already
/// there). Returns the link's pin name. Start-up calls it for a
/// `[wireguard]` interface that already exists; whoever creates the
/// interface later (after a join) calls it once the interface has its
/// address. Peers routed through it are sent to by the next-hop refresh.
pub fn attach_tunnel_rx(
    programs: &mut Programs,
    maps: &mut Maps,
    tunnel: &LinkSummary,
    local: Ipv4Addr,
) -> Result<String, DaemonError> {
    maps.set_tunnel(tunnel.index, local)?;
    Ok(programs.attach_tc(bpf::PROG_TC_TUNNEL_RX, &tunnel.name, tunnel.index)?)
}

/// Attaches decap to the WireGuard interface `tunnel` if there is one and
/// forgets tunnels that went away; returns the pin names to keep.
fn attach_tunnel(
    programs: &mut Programs,
    node: &Node,
    tunnel: Option<&(LinkSummary, Ipv4Network)>,
) -> Result<HashSet<String>, DaemonError> {
    let mut keep = HashSet::new();
    let mut maps = node.maps();
    if let Some((link, local)) = tunnel {
        keep.insert(attach_tunnel_rx(programs, &mut maps, link, local.ip())?);
    }
    for stale in maps
        .tunnels()
        .into_iter()
        .filter(|i| tunnel.is_none_or(|(link, _)| link.index != *i))
    {
        maps.remove_tunnel(stale)?;
    }
    Ok(keep)
}

/// The `[wireguard]` interface and our address on it (with its network),
/// if it exists and has an IPv4 address.
async fn existing_tunnel(
    cfg: &Config,
    nl: &Netlink,
) -> Result<Option<(LinkSummary, Ipv4Network)>, DaemonError> {
    let Some(wg) = &cfg.wireguard else {
        return Ok(None);
    };
    let Some(link) = nl.link(&wg.ifname).await? else {
        return Ok(None);
    };
    let local = nl.first_ipv4_network(link.index).await?;
    if local.is_none() {
        warn!(
            ifname = %link.name,
            "WireGuard interface has no IPv4 address; not receiving VXLAN through it"
        );
    }
    Ok(local.map(|local| (link, local)))
}

/// What the data plane keeps between convergences.
pub struct Dataplane {
    /// Shared with the bridge bypass ([`crate::bypass::Bypass`]), which
    /// attaches `tc_vm_tx`; lock it before the maps, never across an await.
    pub(super) programs: Arc<Mutex<Programs>>,
    pub(super) nl: Netlink,
    pub(super) underlay: LinkSummary,
    pub(super) vtep: Ipv4Addr,
    pub(super) datapath: DatapathMode,
    pub(super) adopted: bool,
    /// Links reported so far (to log each re-attach once).
    pub(super) reported: BTreeMap<(String, String), LinkAction>,
}

impl Dataplane {
    /// The programs, locked.
    pub(super) fn programs(&self) -> MutexGuard<'_, Programs> {
        self.programs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ring buffer the programs report MAC moves through.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, DaemonError> {
        let map = self
            .programs()
            .ebpf_mut()
            .take_map(bpf::MAP_EVENTS)
            .ok_or(MapsError::Missing(bpf::MAP_EVENTS))?;
        Ok(RingBuf::try_from(map).map_err(|e| MapsError::Op {
            map: bpf::MAP_EVENTS,
            source: e,
        })?)
    }

    /// Logs every link re-attached or upgraded since the last call.
    fn log_link_changes(&mut self, links: &[LinkStatus]) {
        for link in links {
            let key = (link.program.clone(), link.interface.clone());
            if self.reported.get(&key) == Some(&link.action) {
                continue;
            }
            self.reported.insert(key, link.action);
            let detail = link.detail.as_deref().unwrap_or("");
            match link.action {
                LinkAction::Reattached => info!(
                    program = %link.program,
                    interface = %link.interface,
                    "re-attached: {detail}"
                ),
                LinkAction::Upgraded => info!(
                    program = %link.program,
                    interface = %link.interface,
                    "switched to this build's program"
                ),
                LinkAction::Attached | LinkAction::Adopted => {}
            }
        }
    }
}

/// The node's outer-header settings from `cfg`.
fn outer_header(cfg: &Config) -> OuterHeader {
    OuterHeader {
        ttl: cfg.node.ttl,
        dscp: match cfg.node.dscp {
            DscpSetting::Inherit => None,
            DscpSetting::Fixed(d) => Some(d),
        },
        sport_range: sync::local_port_range(),
    }
}

/// Brings links, maps and programs to `cfg` merged with what the control
/// plane adds: every remote VTEP bound to its path and trust, the open
/// ports and each VNI's FDB capacity included. With a WireGuard tunnel the
/// overlay MTU leaves room for its headers too, so a frame fits whichever
/// way it travels. Missing bridges are created as `bridges` allows. Returns
/// the interfaces the link watcher should keep an eye on.
pub async fn converge(
    cfg: &Config,
    dynamic: &Dynamic,
    dp: &mut Dataplane,
    node: &Node,
    bridges: Bridges,
) -> Result<Expected, DaemonError> {
    // Trust and capacities come from the file (which peers are static) and
    // the control plane; everything else from the two merged.
    let file = cfg;
    let mut expected = Expected::default();
    // The underlay may have been recreated (a new index) since last time.
    let underlay = dp.nl.link(&file.node.underlay).await?;
    expected.watch(
        &file.node.underlay,
        underlay.as_ref().map(|u| (u.index, None)),
    );
    dp.underlay = underlay
        .ok_or_else(|| crate::netlink::NetlinkError::NoSuchLink(file.node.underlay.clone()))?;
    let tunnel = existing_tunnel(file, &dp.nl).await?;
    let vteps = trust::vtep_bindings(file, dynamic, tunnel.as_ref().map(|(_, net)| *net));
    let open_ports = trust::open_ports(file);
    let cfg = effective_config(file, dynamic);
    node.maps().set_fdb_capacities(fdb_capacities(file, &cfg));
    let path_mtu = dynamic
        .tunnel_mtu
        .map_or(dp.underlay.mtu, |t| t.min(dp.underlay.mtu));
    let overlay_mtu = path_mtu.saturating_sub(VLNET_ENCAP_LEN);
    let ports = ensure_overlay_ports(&cfg, &dp.nl, overlay_mtu, bridges, &mut expected).await?;
    let outer = outer_header(file);
    let desired = |xdp: bool| Desired {
        node: sync::node_config(
            dp.underlay.index,
            dp.vtep,
            path_mtu,
            outer,
            file.node.flow_tracking,
            file.is_gateway(),
        ),
        vnis: ports
            .iter()
            .map(|(v, _, inner)| desired_vni(file, dynamic, dp.vtep, v, inner.index))
            .collect(),
        xdp,
        vteps: vteps.clone(),
        open_ports: open_ports.clone(),
    };
    sync::apply(&mut node.maps(), &desired(dp.datapath == DatapathMode::Xdp))?;
    let peers = peers_of(&cfg);
    resolve_next_hops(&dp.nl, node, &peers).await;
    node.set_next_hop_peers(peers);

    let datapath = {
        let mut programs = dp.programs();
        let keep = attach_tunnel(&mut programs, node, tunnel.as_ref())?;
        attach(
            &cfg,
            &mut programs,
            &dp.underlay,
            &ports,
            dp.datapath,
            keep,
            || sync::apply(&mut node.maps(), &desired(false)),
        )?
    };
    dp.datapath = datapath;
    await_ports_up(&dp.nl, &ports).await;
    let links = dp.programs().links();
    dp.log_link_changes(&links);
    node.set_facts(NodeFacts {
        name: cfg.node.name.clone(),
        vtep: dp.vtep,
        underlay: dp.underlay.name.clone(),
        underlay_mtu: path_mtu,
        datapath,
        adopted: dp.adopted,
        relay: file.is_gateway(),
        vnis: ports
            .iter()
            .map(|(v, port, _)| (v.id, v.bridge.clone(), port.name.clone(), v.peers.len()))
            .collect(),
        bypass: ports
            .iter()
            .filter(|(v, ..)| v.bypass)
            .map(|(v, ..)| v.id)
            .collect(),
        links,
    });
    Ok(expected)
}

/// Each served VNI's FDB capacity (`file` says it; VNIs granted by a
/// controller get `node.fdb_max_per_vni`). Warns when they add up to more
/// than the FDB holds (possible only with granted VNIs: the file's are
/// checked when it is loaded).
pub(super) fn fdb_capacities(file: &Config, effective: &Config) -> Capacities {
    let per_vni: std::collections::BTreeMap<u32, u32> = effective
        .vni
        .iter()
        .map(|v| (v.id, file.fdb_capacity(v.id)))
        .collect();
    let total: u64 = per_vni.values().map(|c| u64::from(*c)).sum();
    if total > u64::from(crate::config::FDB_MAX) {
        warn!(
            total,
            fdb = crate::config::FDB_MAX,
            "the served VNIs' FDB capacities add up to more than the FDB holds; \
             lower node.fdb_max_per_vni"
        );
    }
    Capacities::new(file.node.fdb_max_per_vni, per_vni)
}
