//! The node daemon: start-up (validate, lock, links, programs, maps), its
//! background tasks (convergence, next-hop refresh, FDB upkeep, API,
//! metrics), and teardown. Stopping the daemon never stops forwarding:
//! programs and maps stay pinned until `teardown`.
//!
//! # Layout
//! - `start`: start-up up to readiness — programs and maps
//!   loaded or adopted, the control plane, the first convergence, the
//!   listeners; `READY=1` to systemd ([`crate::notify`]) once the admin API
//!   answers.
//! - `converge`: convergence (links, maps, program links).
//! - `tasks`: the background tasks, each named in the daemon's
//!   [`TaskSet`], and the wait for a stop; [`run`] stops them all on one
//!   path (the control plane's too).
//! - `links`: the interface watcher that asks for a convergence when a
//!   bridge or port changes under the daemon.
//! - `follow`: the task that converges again on every change (control
//!   plane, interfaces, reload); `reload`: what a reload changes, and what
//!   needs a restart instead.
//! - `sdn_watch`: a reload whenever the Proxmox SDN zone of `[proxmox]`
//!   changes.
//! - `nexthops`: every remote VTEP's next hop; `upkeep`: FDB ageing and
//!   capacity, arrivals, traffic samples.
//! - `evpn`: starting the EVPN agent when `[evpn]` is configured.
//! - [`teardown`]: removing everything vlnet made.

mod converge;
mod evpn;
mod follow;
mod links;
mod nexthops;
mod reload;
mod sdn_watch;
mod start;
mod tasks;
mod teardown;
mod upkeep;

use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::{info, info_span, Instrument};
use vlnet_ebpf::abi::VLNET_ENCAP_LEN;

use crate::api::ApiError;
use crate::bpf::BpfError;
use crate::config::Config;
use crate::control::ControlError;
use crate::lock::{LockError, NodeLock};
use crate::maps::MapsError;
use crate::metrics::MetricsError;
use crate::netlink::NetlinkError;
use crate::notify;
use crate::tasks::TaskSet;

pub use converge::{attach_tunnel_rx, Bridges, Dataplane};
pub use nexthops::{NEXTHOP_REFRESH, NEXTHOP_RETRY};
pub use reload::ReloadError;
pub use start::status_line;
pub use teardown::{teardown, TeardownReport};

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
/// again) until SIGINT/SIGTERM or an API shutdown; then stops every task
/// (the daemon's and the control plane's) and returns. The programs keep
/// forwarding.
pub async fn run(cfg: Config, config_path: PathBuf) -> Result<(), DaemonError> {
    let span = info_span!("daemon", node = %cfg.node.name);
    async move {
        crate::privileges::require("vlnet daemon")?;
        let _lock = NodeLock::acquire(&cfg.node.state_dir, &cfg.node.name)?;
        let started = start::start(&cfg).await?;
        let (node, plane) = (started.node.clone(), started.plane.clone());
        let mut background = TaskSet::new();
        tasks::spawn_all(&mut background, &cfg, config_path, started);
        let ready = start::ready(&cfg, &node).await;
        if ready.is_ok() {
            tasks::wait_for_stop(&node, &mut background).await;
            notify::tell("STOPPING=1");
        }
        background.shutdown().await;
        if let Some(plane) = plane {
            plane.shutdown().await;
        }
        let _ = std::fs::remove_file(&cfg.node.api_socket);
        ready?;
        info!("daemon stopped; programs stay attached (vlnet ctl teardown removes them)");
        Ok(())
    }
    .instrument(span)
    .await
}
