//! The node daemon: start-up (validate, lock, links, programs, maps), its
//! background tasks (next-hop refresh, FDB ageing, API, metrics), and
//! teardown. Stopping the daemon never stops forwarding: programs and maps
//! stay pinned until `teardown`.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use aya::programs::XdpMode;
use ipnetwork::Ipv4Network;
use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, info_span, warn, Instrument};
use vlnet_ebpf::abi::{vlnet_nexthop, VLNET_ENCAP_LEN, VLNET_NH_L3};

use crate::api::{self, ApiError};
use crate::bpf::{self, BpfError, Programs};
use crate::capacity::{self, Capacities};
use crate::config::{Config, DatapathSetting, DscpSetting, VniConfig};
use crate::control::plane::ControlError;
use crate::control::{ControlPlane, DataplaneHooks, Dynamic};
use crate::effective::effective_config;
use crate::fdb::{self, monotonic_ns};
use crate::locals;
use crate::lock::{LockError, NodeLock};
use crate::maps::{Maps, MapsError};
use crate::metrics::{self, MetricsError};
use crate::model::DatapathMode;
use crate::moves;
use crate::netlink::{self, LinkSummary, Netlink, NetlinkError, NextHop};
use crate::node::{Node, NodeFacts};
use crate::peer_rtt;
use crate::store::{state_path, NodeState};
use crate::sync::{self, Desired, DesiredVni, OuterHeader};
use crate::traffic;
use crate::trust;

/// How often next hops are re-resolved from the kernel's tables.
pub const NEXTHOP_REFRESH: Duration = Duration::from_secs(1);
/// How often while some next hop is still unresolved.
pub const NEXTHOP_RETRY: Duration = Duration::from_millis(100);
/// How long `teardown` waits for a running daemon to exit.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Why the daemon could not start or run.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// Another daemon holds the node.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Link work failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// Loading or attaching programs failed.
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// Writing the maps failed.
    #[error(transparent)]
    Maps(#[from] MapsError),
    /// The admin API could not start.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// `/metrics` could not start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The underlay has no IPv4 address and `node.vtep` is not set.
    #[error("node.vtep is not set and underlay {0} has no IPv4 address to use")]
    NoVtep(String),
    /// The underlay MTU leaves no room for the outer headers.
    #[error(
        "underlay {name} MTU {mtu} is too small for VXLAN: the overlay needs 68 (IPv4's minimum) \
         plus {VLNET_ENCAP_LEN} bytes of outer headers"
    )]
    SmallMtu {
        /// Underlay name.
        name: String,
        /// Its MTU.
        mtu: u32,
    },
    /// `datapath = "xdp"` was asked for but the underlay refused XDP.
    #[error("XDP could not be attached to {name}: {source}")]
    Xdp {
        /// Underlay name.
        name: String,
        /// Underlying error.
        source: Box<BpfError>,
    },
    /// The control plane could not start.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// State on disk could not be read or written.
    #[error("node state {path}: {source}")]
    State {
        /// State file.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

fn state_error(path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::State {
        path: path.display().to_string(),
        source,
    }
}

/// Runs the daemon for `cfg` until SIGINT/SIGTERM or an API shutdown.
pub async fn run(cfg: Config) -> Result<(), DaemonError> {
    let span = info_span!("daemon", node = %cfg.node.name);
    async move {
        let _lock = NodeLock::acquire(&cfg.node.state_dir, &cfg.node.name)?;
        let (node, mut dataplane) = start(&cfg).await?;
        let control = if let Some(wg) = &cfg.wireguard {
            let facts = node.facts();
            let hooks: Arc<dyn DataplaneHooks> = node.clone();
            let plane = ControlPlane::load(&cfg, wg, facts.vtep, facts.underlay_mtu, hooks)?;
            node.set_control(Arc::clone(&plane));
            // Tunnel and persisted state first, so that the first
            // convergence already keeps the members' peers: a restart
            // must not drop them even for a moment.
            plane.start().await?;
            converge(&cfg, &plane.dynamic(), &mut dataplane, &node).await?;
            plane.spawn_tasks().await;
            Some(plane)
        } else {
            converge(&cfg, &Dynamic::default(), &mut dataplane, &node).await?;
            None
        };
        let events = dataplane.take_events()?;
        let api = api::bind(&cfg.node.api_socket)?;
        let metrics_listener = metrics::bind(cfg.node.metrics_listen)?;
        let (api_node, metrics_node) = (node.clone(), node.clone());
        let mut tasks = vec![
            tokio::spawn(
                async move {
                    if let Err(e) = api::serve_listener(api, api_node).await {
                        warn!(error = %e, "admin API stopped");
                    }
                }
                .in_current_span(),
            ),
            tokio::spawn(
                async move {
                    if let Err(e) = metrics::serve_listener(metrics_listener, metrics_node).await {
                        warn!(error = %e, "metrics endpoint stopped");
                    }
                }
                .in_current_span(),
            ),
            tokio::spawn(refresh_next_hops(node.clone()).in_current_span()),
            tokio::spawn(age_fdb(node.clone(), cfg.node.fdb_ageing_secs).in_current_span()),
            tokio::spawn(enforce_fdb_capacity(node.clone()).in_current_span()),
            tokio::spawn(locals::watch(node.clone()).in_current_span()),
            tokio::spawn(expire_arrivals(node.clone()).in_current_span()),
            tokio::spawn({
                let node = node.clone();
                moves::watch(events, move |record| node.record_move(record)).in_current_span()
            }),
            tokio::spawn(sample_traffic(node.clone()).in_current_span()),
            tokio::spawn({
                let (peers_of, table) = (node.clone(), node.peer_rtt_table());
                peer_rtt::probe_peers(move || peers_of.next_hop_peers(), table).in_current_span()
            }),
        ];
        if let Some(plane) = control {
            let (cfg, node) = (cfg.clone(), node.clone());
            tasks.push(tokio::spawn(
                follow_control_plane(cfg, plane, dataplane, node).in_current_span(),
            ));
        }
        let facts = node.facts();
        info!(
            vtep = %facts.vtep,
            datapath = ?facts.datapath,
            adopted = facts.adopted,
            "vlnet node ready"
        );
        wait_for_stop(&node).await;
        for task in tasks {
            task.abort();
        }
        let _ = std::fs::remove_file(&cfg.node.api_socket);
        info!("daemon stopped; programs stay attached (vlnet ctl teardown removes them)");
        Ok(())
    }
    .instrument(span)
    .await
}

/// Converges the data plane again whenever the control plane changes what
/// it serves (a join, a member added or removed, the tunnel coming up).
async fn follow_control_plane(
    cfg: Config,
    plane: Arc<ControlPlane>,
    mut dataplane: Dataplane,
    node: Arc<Node>,
) {
    let mut changes = plane.changes();
    while changes.changed().await.is_ok() {
        if let Err(e) = converge(&cfg, &plane.dynamic(), &mut dataplane, &node).await {
            warn!(error = %e, "cannot apply the control plane's changes");
        }
    }
}

async fn wait_for_stop(node: &Node) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        node.shutdown_requested().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        _ = int.recv() => info!("SIGINT"),
        () = node.shutdown_requested() => info!("shutdown requested over the API"),
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

fn choose_datapath(setting: DatapathSetting, underlay: &LinkSummary) -> DatapathMode {
    let tc = match setting {
        DatapathSetting::Tc => true,
        DatapathSetting::Xdp => false,
        DatapathSetting::Auto => netlink::prefers_tc(underlay.kind.as_deref()),
    };
    if tc {
        DatapathMode::Tc
    } else {
        DatapathMode::Xdp
    }
}

/// A VNI's config with the two ends of its overlay port.
type OverlayPort<'a> = (&'a VniConfig, LinkSummary, LinkSummary);

/// Creates missing bridges (remembering them for teardown) and overlay ports.
async fn ensure_overlay_ports<'a>(
    cfg: &'a Config,
    nl: &Netlink,
    overlay_mtu: u32,
) -> Result<Vec<OverlayPort<'a>>, DaemonError> {
    let state_file = state_path(&cfg.node.state_dir, &cfg.node.name);
    let mut state = NodeState::load(&state_file).map_err(state_error(&state_file))?;
    let mut ports = Vec::new();
    for v in &cfg.vni {
        if nl.ensure_bridge(&v.bridge).await? {
            info!(bridge = %v.bridge, "created bridge");
            state.created_bridges.insert(v.bridge.clone());
            state.save(&state_file).map_err(state_error(&state_file))?;
        }
        let bridge = nl.require_link(&v.bridge).await?;
        let (port, inner) = nl.ensure_overlay_port(v.id, &bridge, overlay_mtu).await?;
        ports.push((v, port, inner));
    }
    Ok(ports)
}

/// Attaches decap to the underlay (first: the overlay side only sends once
/// it can receive) and encap to every overlay port, then detaches pinned
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
        }
    }
    let pruned = programs
        .prune_links(&keep)
        .map_err(state_error(&bpf::pin_dir(&cfg.node.name)))?;
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
    programs: Programs,
    nl: Netlink,
    underlay: LinkSummary,
    vtep: Ipv4Addr,
    datapath: DatapathMode,
    outer: OuterHeader,
    flow_tracking: bool,
    relay: bool,
    adopted: bool,
}

impl Dataplane {
    /// The ring buffer the programs report MAC moves through.
    fn take_events(&mut self) -> Result<RingBuf<MapData>, DaemonError> {
        let map = self
            .programs
            .ebpf_mut()
            .take_map(bpf::MAP_EVENTS)
            .ok_or(MapsError::Missing(bpf::MAP_EVENTS))?;
        Ok(RingBuf::try_from(map).map_err(|e| MapsError::Op {
            map: bpf::MAP_EVENTS,
            source: e,
        })?)
    }
}

/// Loads (or adopts) the programs and maps; [`converge`] then brings them to
/// what the config and the control plane say.
async fn start(cfg: &Config) -> Result<(Arc<Node>, Dataplane), DaemonError> {
    let nl = Netlink::connect()?;
    let underlay = nl.require_link(&cfg.node.underlay).await?;
    let vtep = match cfg.node.vtep {
        Some(v) => v,
        None => nl
            .first_ipv4(underlay.index)
            .await?
            .ok_or_else(|| DaemonError::NoVtep(underlay.name.clone()))?,
    };
    if underlay.mtu < VLNET_ENCAP_LEN + 68 {
        return Err(DaemonError::SmallMtu {
            name: underlay.name.clone(),
            mtu: underlay.mtu,
        });
    }
    let adopted = bpf::has_pins(&cfg.node.name);
    let mut programs = Programs::load(&cfg.node.name)?;
    let mut maps = Maps::take_from(programs.ebpf_mut())?;
    // Before the control plane programs its persisted routes.
    maps.set_fdb_capacities(fdb_capacities(cfg, cfg));
    let datapath = choose_datapath(cfg.node.datapath, &underlay);
    let relay = cfg.is_gateway();
    let facts = NodeFacts {
        name: cfg.node.name.clone(),
        vtep,
        underlay: underlay.name.clone(),
        underlay_mtu: underlay.mtu,
        datapath,
        adopted,
        relay,
        vnis: Vec::new(),
    };
    let node = Arc::new(Node::new(facts, maps));
    let dataplane = Dataplane {
        programs,
        nl,
        underlay,
        vtep,
        datapath,
        outer: OuterHeader {
            ttl: cfg.node.ttl,
            dscp: match cfg.node.dscp {
                DscpSetting::Inherit => None,
                DscpSetting::Fixed(d) => Some(d),
            },
            sport_range: sync::local_port_range(),
        },
        flow_tracking: cfg.node.flow_tracking,
        relay,
        adopted,
    };
    Ok((node, dataplane))
}

/// Brings links, maps and programs to `cfg` merged with what the control
/// plane adds: every remote VTEP bound to its path and trust, the open
/// ports and each VNI's FDB capacity included. With a WireGuard tunnel the
/// overlay MTU leaves room for its headers too, so a frame fits whichever
/// way it travels.
async fn converge(
    cfg: &Config,
    dynamic: &Dynamic,
    dp: &mut Dataplane,
    node: &Node,
) -> Result<(), DaemonError> {
    // Trust and capacities come from the file (which peers are static) and
    // the control plane; everything else from the two merged.
    let file = cfg;
    let tunnel = existing_tunnel(file, &dp.nl).await?;
    let vteps = trust::vtep_bindings(file, dynamic, tunnel.as_ref().map(|(_, net)| *net));
    let open_ports = trust::open_ports(file);
    let cfg = effective_config(file, dynamic);
    node.maps().set_fdb_capacities(fdb_capacities(file, &cfg));
    let path_mtu = dynamic
        .tunnel_mtu
        .map_or(dp.underlay.mtu, |t| t.min(dp.underlay.mtu));
    let overlay_mtu = path_mtu.saturating_sub(VLNET_ENCAP_LEN);
    let ports = ensure_overlay_ports(&cfg, &dp.nl, overlay_mtu).await?;
    let desired = |xdp: bool| Desired {
        node: sync::node_config(
            dp.underlay.index,
            dp.vtep,
            path_mtu,
            dp.outer,
            dp.flow_tracking,
            dp.relay,
        ),
        vnis: ports
            .iter()
            .map(|(v, _, inner)| DesiredVni {
                vni: v.id,
                overlay_ifindex: inner.index,
                peers: file.vni_peers(v.id).to_vec(),
                members: v.peers.clone(),
                static_fdb: v.static_fdb.iter().map(|s| (s.mac.0, s.vtep)).collect(),
            })
            .collect(),
        xdp,
        vteps: vteps.clone(),
        open_ports: open_ports.clone(),
    };
    sync::apply(&mut node.maps(), &desired(dp.datapath == DatapathMode::Xdp))?;
    let peers = peers_of(&cfg);
    resolve_next_hops(&dp.nl, node, &peers).await;
    node.set_next_hop_peers(peers);

    let mut keep = HashSet::new();
    {
        let mut maps = node.maps();
        if let Some((link, local)) = &tunnel {
            keep.insert(attach_tunnel_rx(
                &mut dp.programs,
                &mut maps,
                link,
                local.ip(),
            )?);
        }
        for stale in maps
            .tunnels()
            .into_iter()
            .filter(|i| tunnel.as_ref().is_none_or(|(link, _)| link.index != *i))
        {
            maps.remove_tunnel(stale)?;
        }
    }

    let datapath = attach(
        &cfg,
        &mut dp.programs,
        &dp.underlay,
        &ports,
        dp.datapath,
        keep,
        || sync::apply(&mut node.maps(), &desired(false)),
    )?;
    dp.datapath = datapath;
    node.set_facts(NodeFacts {
        name: cfg.node.name.clone(),
        vtep: dp.vtep,
        underlay: dp.underlay.name.clone(),
        underlay_mtu: path_mtu,
        datapath,
        adopted: dp.adopted,
        relay: dp.relay,
        vnis: ports
            .iter()
            .map(|(v, port, _)| (v.id, v.bridge.clone(), port.name.clone(), v.peers.len()))
            .collect(),
    });
    Ok(())
}

/// Each served VNI's FDB capacity (`file` says it; VNIs granted by a
/// controller get `node.fdb_max_per_vni`). Warns when they add up to more
/// than the FDB holds (possible only with granted VNIs: the file's are
/// checked when it is loaded).
fn fdb_capacities(file: &Config, effective: &Config) -> Capacities {
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

/// How long start-up waits for the kernel to resolve new next hops, so that
/// the first flooded ARP does not find them unresolved.
const RESOLVE_WAIT: Duration = Duration::from_secs(2);

/// Resolves every peer's next hop into `vlnet_nexthops`; unresolved ones get
/// a managed neighbour entry so the kernel resolves them and keeps them fresh
/// (waiting up to [`RESOLVE_WAIT`] for that).
async fn resolve_next_hops(nl: &Netlink, node: &Node, peers: &[Ipv4Addr]) {
    let deadline = tokio::time::Instant::now() + RESOLVE_WAIT;
    loop {
        let updates = next_hop_updates(nl, peers).await;
        let pending = updates
            .iter()
            .any(|(_, hop)| matches!(hop, NextHop::Unresolved { .. }));
        {
            let mut maps = node.maps();
            for update in updates {
                apply_next_hop(&mut maps, update);
            }
        }
        if !pending || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wanted: HashSet<Ipv4Addr> = peers.iter().copied().collect();
    let mut maps = node.maps();
    for stale in maps
        .nexthop_vteps()
        .into_iter()
        .filter(|v| !wanted.contains(v))
    {
        let _ = maps.remove_nexthop(stale);
    }
}

async fn next_hop_updates(nl: &Netlink, peers: &[Ipv4Addr]) -> Vec<(Ipv4Addr, NextHop)> {
    let hops = match nl.next_hops(peers).await {
        Ok(hops) => hops,
        Err(e) => {
            warn!(error = %e, "next-hop lookup failed");
            return Vec::new();
        }
    };
    for (peer, hop) in &hops {
        if let NextHop::Unresolved { ifindex, via } = hop {
            if let Err(e) = nl.ensure_managed_neighbour(*ifindex, *via).await {
                warn!(%peer, %via, error = %e, "cannot add managed neighbour");
            }
        }
    }
    hops
}

fn apply_next_hop(maps: &mut Maps, (peer, hop): (Ipv4Addr, NextHop)) {
    let result = match hop {
        NextHop::Resolved {
            ifindex,
            smac,
            dmac,
        } => set_next_hop_if_changed(
            maps,
            peer,
            vlnet_nexthop {
                ifindex,
                smac,
                dmac,
                ..Default::default()
            },
        ),
        NextHop::Direct { ifindex, saddr } => set_next_hop_if_changed(
            maps,
            peer,
            vlnet_nexthop {
                ifindex,
                saddr_be: u32::from(saddr).to_be(),
                flags: VLNET_NH_L3,
                ..Default::default()
            },
        ),
        NextHop::NoRoute => maps.set_nexthop(peer, &vlnet_nexthop::default()),
        NextHop::Unresolved { .. } => maps.remove_nexthop(peer),
    };
    if let Err(e) = result {
        warn!(%peer, error = %e, "cannot update next hop");
    }
}

fn set_next_hop_if_changed(
    maps: &mut Maps,
    peer: Ipv4Addr,
    entry: vlnet_nexthop,
) -> Result<(), MapsError> {
    if maps.nexthop(peer) == Some(entry) {
        return Ok(());
    }
    maps.set_nexthop(peer, &entry)
}

async fn refresh_next_hops(node: Arc<Node>) {
    let nl = match Netlink::connect() {
        Ok(nl) => nl,
        Err(e) => {
            warn!(error = %e, "next-hop refresh disabled");
            return;
        }
    };
    loop {
        let peers = node.next_hop_peers();
        let updates = next_hop_updates(&nl, &peers).await;
        let pending = updates
            .iter()
            .any(|(_, hop)| matches!(hop, NextHop::Unresolved { .. }));
        {
            let mut maps = node.maps();
            for update in updates {
                apply_next_hop(&mut maps, update);
            }
        }
        // Poll fast while a peer is being resolved: frames other than IPv4
        // cannot reach it until then.
        tokio::time::sleep(if pending {
            NEXTHOP_RETRY
        } else {
            NEXTHOP_REFRESH
        })
        .await;
    }
}

/// How long a MAC that moved here waits for its first frame from afar
/// before its arrival stops being timed.
const ARRIVAL_WAIT: Duration = Duration::from_secs(10);

/// Records the node's traffic for placement advice every
/// [`traffic::SAMPLE_EVERY`], starting now.
async fn sample_traffic(node: Arc<Node>) {
    let nl = match Netlink::connect() {
        Ok(nl) => nl,
        Err(e) => {
            warn!(error = %e, "placement advice disabled: no netlink");
            return;
        }
    };
    let mut tick = tokio::time::interval(traffic::SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let snapshot = node.traffic_snapshot(&nl).await;
        node.record_traffic(snapshot);
    }
}

/// Forgets arrivals that never saw a frame, every second.
async fn expire_arrivals(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let wait = u64::try_from(ARRIVAL_WAIT.as_nanos()).unwrap_or(u64::MAX);
        if let Err(e) = node.maps().expire_arrivals(monotonic_ns(), wait) {
            warn!(error = %e, "cannot expire arrivals");
        }
    }
}

/// How often the FDB's capacity per VNI is enforced.
const CAPACITY_EVERY: Duration = Duration::from_secs(1);

/// Keeps every VNI within its FDB capacity, every [`CAPACITY_EVERY`]:
/// evicts the oldest learned entries of a VNI above it, pauses learning in
/// a full VNI (resumes it once there is room), and warns once when a VNI
/// crosses [`capacity::WARN_PERCENT`] of its capacity.
async fn enforce_fdb_capacity(node: Arc<Node>) {
    let mut watch = capacity::Watch::default();
    let mut paused = BTreeSet::new();
    let mut tick = tokio::time::interval(CAPACITY_EVERY);
    loop {
        tick.tick().await;
        let plan = match node.maps().enforce_fdb_capacity(&mut watch) {
            Ok(plan) => plan,
            Err(e) => {
                warn!(error = %e, "cannot enforce the FDB capacity");
                continue;
            }
        };
        if !plan.evict.is_empty() {
            info!(
                count = plan.evict.len(),
                "evicted the oldest learned FDB entries of full VNIs"
            );
        }
        for fill in &plan.nearly_full {
            warn!(
                vni = fill.vni,
                entries = fill.entries,
                capacity = fill.capacity,
                "FDB share of the VNI is {} % full; at capacity, new MACs are no longer \
                 learned (raise node.fdb_max_per_vni or the VNI's fdb_max?)",
                fill.percent()
            );
        }
        for vni in plan.paused.difference(&paused) {
            warn!(vni, "FDB share of the VNI is full: learning paused");
        }
        for vni in paused.difference(&plan.paused) {
            info!(vni, "FDB share of the VNI has room again: learning resumed");
        }
        paused = plan.paused;
    }
}

async fn age_fdb(node: Arc<Node>, ageing_secs: u64) {
    let period = Duration::from_secs((ageing_secs / 10).clamp(1, 30));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let mut maps = node.maps();
        let expired = fdb::expired(&maps.fdb(), monotonic_ns(), ageing_secs);
        for key in &expired {
            if let Err(e) = maps.remove_fdb(key) {
                warn!(error = %e, "cannot age FDB entry");
            }
        }
        if !expired.is_empty() {
            info!(count = expired.len(), "aged out learned FDB entries");
        }
    }
}

/// What `teardown` removed.
#[derive(Debug, Default)]
pub struct TeardownReport {
    /// Whether a running daemon was asked to stop.
    pub stopped_daemon: bool,
    /// Links deleted (overlay ports and bridges vlnet created).
    pub deleted_links: Vec<String>,
}

/// Stops the node's daemon if it runs, then removes everything vlnet created
/// for it: pinned programs and maps (forwarding stops), overlay ports, the
/// bridges it created, its socket and state file.
pub async fn teardown(cfg: &Config) -> Result<TeardownReport, DaemonError> {
    let mut report = TeardownReport::default();
    if api::request(&cfg.node.api_socket, &api::Request::Status).is_ok() {
        // The daemon may exit before its answer is flushed: the lock below
        // is what tells that it is gone.
        let _ = api::request(&cfg.node.api_socket, &api::Request::Shutdown);
        report.stopped_daemon = true;
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
    let _lock = loop {
        match NodeLock::acquire(&cfg.node.state_dir, &cfg.node.name) {
            Ok(lock) => break lock,
            Err(e @ LockError::Held { .. }) if tokio::time::Instant::now() >= deadline => {
                return Err(e.into())
            }
            Err(LockError::Held { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(e.into()),
        }
    };
    let pins = bpf::pin_dir(&cfg.node.name);
    bpf::remove_pins(&cfg.node.name).map_err(state_error(&pins))?;
    let nl = Netlink::connect()?;
    for v in &cfg.vni {
        let (port, _) = netlink::overlay_port_names(v.id);
        if nl.link(&port).await?.is_some() {
            nl.delete_link(&port).await?;
            report.deleted_links.push(port);
        }
    }
    let state_file = state_path(&cfg.node.state_dir, &cfg.node.name);
    let state = NodeState::load(&state_file).map_err(state_error(&state_file))?;
    for bridge in &state.created_bridges {
        if nl.link(bridge).await?.is_some() {
            nl.delete_link(bridge).await?;
            report.deleted_links.push(bridge.clone());
        }
    }
    if let Some(wg) = &cfg.wireguard {
        let pid_file = crate::control::tunnel::pid_file(&cfg.node.state_dir, &cfg.node.name);
        crate::wg::process::stop_device(&wg.ifname, &pid_file)
            .map_err(|e| state_error(&pid_file)(std::io::Error::other(e)))?;
    }
    // A member leaves its cluster (joining again needs a new token); a
    // controller's registry stays: deleting it would orphan every member.
    let membership =
        crate::control::membership::membership_path(&cfg.node.state_dir, &cfg.node.name);
    for file in [state_file, cfg.node.api_socket.clone(), membership] {
        let _ = std::fs::remove_file(file);
    }
    Ok(report)
}
