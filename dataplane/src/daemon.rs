//! The node daemon: start-up (validate, lock, links, programs, maps), its
//! background tasks (convergence, next-hop refresh, FDB upkeep, API,
//! metrics), and teardown. Stopping the daemon never stops forwarding:
//! programs and maps stay pinned until `teardown`.
//!
//! # Layout
//! - [`converge`](self::converge): start-up and convergence (links, maps,
//!   program links).
//! - `links`: the interface watcher that asks for a convergence when a
//!   bridge or port changes under the daemon.
//! - `follow`: the task that converges again on every change (control
//!   plane, interfaces, reload); `reload`: what a reload changes, and what
//!   needs a restart instead.
//! - `sdn_watch`: a reload whenever the Proxmox SDN zone of `[proxmox]`
//!   changes.
//! - `nexthops`: every remote VTEP's next hop; `upkeep`: FDB ageing and
//!   capacity, arrivals, traffic samples.
//! - Readiness and status go to systemd (`Type=notify`, [`crate::notify`]):
//!   `READY=1` once the programs are attached and the admin API answers.
//! - [`teardown`]: removing everything vlnet made.

mod converge;
mod follow;
mod links;
mod nexthops;
mod reload;
mod sdn_watch;
mod teardown;
mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{info, info_span, warn, Instrument};
use vlnet_ebpf::abi::VLNET_ENCAP_LEN;

use crate::api::{self, ApiError};
use crate::bpf::BpfError;
use crate::control::{ControlError, ControlPlane, DataplaneHooks, Dynamic};
use crate::locals;
use crate::lock::{LockError, NodeLock};
use crate::maps::MapsError;
use crate::metrics::{self, MetricsError};
use crate::model::LinkAction;
use crate::moves;
use crate::netlink::NetlinkError;
use crate::node::Node;
use crate::notify;
use crate::peer_rtt;

pub use converge::{attach_tunnel_rx, Bridges, Dataplane};
pub use nexthops::{NEXTHOP_REFRESH, NEXTHOP_RETRY};
pub use reload::ReloadError;
pub use teardown::{teardown, TeardownReport};

use crate::config::Config;
use converge::converge;

/// Reload requests waiting for the convergence task (more are refused:
/// one is enough to pick up the latest file).
const RELOAD_QUEUE: usize = 4;

/// Why the daemon could not start or run.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The process lacks the privileges the daemon needs.
    #[error(transparent)]
    NotPrivileged(#[from] crate::privileges::NotPrivileged),
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

/// Runs the daemon for `cfg` (read from `config_path`, which a reload reads
/// again) until SIGINT/SIGTERM or an API shutdown.
pub async fn run(cfg: Config, config_path: PathBuf) -> Result<(), DaemonError> {
    let span = info_span!("daemon", node = %cfg.node.name);
    async move {
        crate::privileges::require("vlnet daemon")?;
        let _lock = NodeLock::acquire(&cfg.node.state_dir, &cfg.node.name)?;
        notify::tell("STATUS=loading the programs and maps");
        let (node, mut dataplane) = converge::start(&cfg).await?;
        let plane = start_control_plane(&cfg, &node).await?;
        let dynamic = plane
            .as_ref()
            .map_or_else(Dynamic::default, |p| p.dynamic());
        notify::tell("STATUS=attaching the programs");
        let expected = converge(&cfg, &dynamic, &mut dataplane, &node, Bridges::Create).await?;
        if let Some(plane) = &plane {
            plane.spawn_tasks().await;
        }
        let events = dataplane.take_events()?;
        let api = api::bind(&cfg.node.api_socket)?;
        let metrics_listener = metrics::bind(cfg.node.metrics_listen)?;
        let (api_node, metrics_node) = (node.clone(), node.clone());
        let (expected_tx, expected_rx) = watch::channel(expected);
        let relink = Arc::new(Notify::new());
        let (reload_tx, reloads) = mpsc::channel(RELOAD_QUEUE);
        let (sdn_dir, sdn_dir_rx) = watch::channel(sdn_watch::Followed::of(&cfg));
        node.set_reloads(reload_tx);
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
            tokio::spawn(nexthops::refresh_next_hops(node.clone()).in_current_span()),
            tokio::spawn(upkeep::age_fdb(node.clone(), cfg.node.fdb_ageing_secs).in_current_span()),
            tokio::spawn(upkeep::enforce_fdb_capacity(node.clone()).in_current_span()),
            tokio::spawn(locals::watch(node.clone()).in_current_span()),
            tokio::spawn(upkeep::expire_arrivals(node.clone()).in_current_span()),
            tokio::spawn({
                let node = node.clone();
                moves::watch(events, move |record| node.record_move(record)).in_current_span()
            }),
            tokio::spawn(upkeep::sample_traffic(node.clone()).in_current_span()),
            tokio::spawn({
                let (peers_of, table) = (node.clone(), node.peer_rtt_table());
                peer_rtt::probe_peers(move || peers_of.next_hop_peers(), table).in_current_span()
            }),
            tokio::spawn(links::watch(expected_rx, Arc::clone(&relink)).in_current_span()),
            tokio::spawn(
                follow::follow(follow::Follow {
                    cfg: cfg.clone(),
                    config_path,
                    plane,
                    dataplane,
                    node: node.clone(),
                    relink,
                    expected: expected_tx,
                    reloads,
                    sdn_dir,
                })
                .in_current_span(),
            ),
        ];
        tasks.extend(optional_tasks(&cfg, &node, sdn_dir_rx));
        await_api(&cfg.node.api_socket).await?;
        let facts = node.facts();
        info!(
            vtep = %facts.vtep,
            datapath = ?facts.datapath,
            adopted = facts.adopted,
            "vlnet node ready"
        );
        notify::tell(&format!("READY=1\nSTATUS={}", status_line(&node)));
        wait_for_stop(&node).await;
        notify::tell("STOPPING=1");
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

/// Following a Proxmox SDN zone (idle without `[proxmox]`), and systemd's
/// watchdog when it asks for one.
fn optional_tasks(
    cfg: &Config,
    node: &Arc<Node>,
    sdn_dir: watch::Receiver<Option<sdn_watch::Followed>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    sdn_watch::check_zone_mtu(cfg, node);
    tasks.push(tokio::spawn(
        sdn_watch::follow_zone(node.clone(), sdn_dir).in_current_span(),
    ));
    if let Some(every) = notify::watchdog_interval() {
        tasks.push(tokio::spawn(
            watchdog(node.clone(), every).in_current_span(),
        ));
    }
    tasks
}

/// Loads and starts the control plane if the node has a `[wireguard]`
/// section: tunnel and persisted state first, so that the first
/// convergence already keeps the members' peers (a restart must not drop
/// them even for a moment).
async fn start_control_plane(
    cfg: &Config,
    node: &Arc<Node>,
) -> Result<Option<Arc<ControlPlane>>, DaemonError> {
    let Some(wg) = &cfg.wireguard else {
        return Ok(None);
    };
    let facts = node.facts();
    let hooks: Arc<dyn DataplaneHooks> = node.clone();
    let plane = ControlPlane::load(cfg, wg, facts.vtep, facts.underlay_mtu, hooks)?;
    node.set_control(Arc::clone(&plane));
    plane.start().await?;
    Ok(Some(plane))
}

/// Waits until the admin API answers a status request on `socket` (the
/// listener is bound and its task serves), so that readiness is only
/// announced to a node `vlnet ctl` can talk to.
async fn await_api(socket: &Path) -> Result<(), DaemonError> {
    let path = socket.to_path_buf();
    let asked = tokio::task::spawn_blocking(move || api::request(&path, &api::Request::Status));
    let answer = asked.await.map_err(|e| ApiError::Io {
        path: socket.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    answer.map(drop).map_err(DaemonError::from)
}

/// One line for `systemctl status`: what the node forwards and how its
/// programs came to be.
fn status_line(node: &Node) -> String {
    let facts = node.facts();
    let count = |action| facts.links.iter().filter(|l| l.action == action).count();
    format!(
        "forwarding {} VNIs ({:?} decap); links: {} adopted, {} upgraded, {} re-attached, {} attached",
        facts.vnis.len(),
        facts.datapath,
        count(LinkAction::Adopted),
        count(LinkAction::Upgraded),
        count(LinkAction::Reattached),
        count(LinkAction::Attached),
    )
}

/// Tells systemd's watchdog the daemon is alive every `every`, as long as
/// its maps can be locked (a task stuck holding them stops the pings).
async fn watchdog(node: Arc<Node>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        drop(node.maps());
        notify::tell("WATCHDOG=1");
    }
}

/// Waits for SIGTERM, SIGINT or a shutdown over the API; a SIGHUP reloads
/// the config meanwhile (what `systemctl reload` and `kill -HUP` send).
async fn wait_for_stop(node: &Node) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        node.shutdown_requested().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return info!("SIGTERM"),
            _ = int.recv() => return info!("SIGINT"),
            () = node.shutdown_requested() => return info!("shutdown requested over the API"),
            _ = hup.recv() => {
                info!("SIGHUP: reloading the config");
                // The outcome is logged by the convergence task.
                let _ = node.reload().await;
            }
        }
    }
}
