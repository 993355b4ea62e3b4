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
//! - `nexthops`: every remote VTEP's next hop; `upkeep`: FDB ageing and
//!   capacity, arrivals, traffic samples.
//! - [`teardown`]: removing everything vlnet made.

mod converge;
mod links;
mod nexthops;
mod teardown;
mod upkeep;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Notify};
use tracing::{info, info_span, warn, Instrument};
use vlnet_ebpf::abi::VLNET_ENCAP_LEN;

use crate::api::{self, ApiError};
use crate::bpf::BpfError;
use crate::control::plane::ControlError;
use crate::control::{ControlPlane, DataplaneHooks, Dynamic};
use crate::locals;
use crate::lock::{LockError, NodeLock};
use crate::maps::MapsError;
use crate::metrics::{self, MetricsError};
use crate::moves;
use crate::netlink::NetlinkError;
use crate::node::Node;
use crate::peer_rtt;

pub use converge::{attach_tunnel_rx, Bridges, Dataplane};
pub use nexthops::{NEXTHOP_REFRESH, NEXTHOP_RETRY};
pub use teardown::{teardown, TeardownReport};

use crate::config::Config;
use converge::converge;
use links::Expected;

/// How long a burst of link notifications is let settle before converging
/// (an `ifreload` deletes and recreates a bridge in a few milliseconds).
const LINK_SETTLE: Duration = Duration::from_millis(50);

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

/// Runs the daemon for `cfg` until SIGINT/SIGTERM or an API shutdown.
pub async fn run(cfg: Config) -> Result<(), DaemonError> {
    let span = info_span!("daemon", node = %cfg.node.name);
    async move {
        crate::privileges::require("vlnet daemon")?;
        let _lock = NodeLock::acquire(&cfg.node.state_dir, &cfg.node.name)?;
        let (node, mut dataplane) = converge::start(&cfg).await?;
        let plane = if let Some(wg) = &cfg.wireguard {
            let facts = node.facts();
            let hooks: Arc<dyn DataplaneHooks> = node.clone();
            let plane = ControlPlane::load(&cfg, wg, facts.vtep, facts.underlay_mtu, hooks)?;
            node.set_control(Arc::clone(&plane));
            // Tunnel and persisted state first, so that the first
            // convergence already keeps the members' peers: a restart
            // must not drop them even for a moment.
            plane.start().await?;
            Some(plane)
        } else {
            None
        };
        let dynamic = plane
            .as_ref()
            .map_or_else(Dynamic::default, |p| p.dynamic());
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
        let tasks = vec![
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
                follow(Follow {
                    cfg: cfg.clone(),
                    plane,
                    dataplane,
                    node: node.clone(),
                    relink,
                    expected: expected_tx,
                })
                .in_current_span(),
            ),
        ];
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

/// What the convergence task owns.
struct Follow {
    cfg: Config,
    plane: Option<Arc<ControlPlane>>,
    dataplane: Dataplane,
    node: Arc<Node>,
    relink: Arc<Notify>,
    expected: watch::Sender<Expected>,
}

/// Converges the data plane again whenever the control plane changes what
/// it serves (a join, a member added or removed, the tunnel coming up) or
/// an interface vlnet uses changed under it (see `links`).
async fn follow(mut f: Follow) {
    let mut changes = f.plane.as_ref().map(|p| p.changes());
    loop {
        let control_changed = async {
            match &mut changes {
                Some(c) => c.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let bridges = tokio::select! {
            alive = control_changed => {
                if !alive {
                    changes = None;
                    continue;
                }
                Bridges::Create
            }
            () = f.relink.notified() => {
                tokio::time::sleep(LINK_SETTLE).await;
                Bridges::OnlyOurs
            }
        };
        let dynamic = f
            .plane
            .as_ref()
            .map_or_else(Dynamic::default, |p| p.dynamic());
        let began = Instant::now();
        match converge(&f.cfg, &dynamic, &mut f.dataplane, &f.node, bridges).await {
            Ok(expected) => {
                if bridges == Bridges::OnlyOurs {
                    info!(
                        took_ms = began.elapsed().as_millis(),
                        "interfaces converged again"
                    );
                }
                f.expected.send_replace(expected);
            }
            Err(e) if bridges == Bridges::OnlyOurs => {
                warn!(error = %e, "cannot converge after an interface change; waiting for the next");
            }
            Err(e) => warn!(error = %e, "cannot apply the control plane's changes"),
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
