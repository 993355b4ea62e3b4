//! `vlnet ctl teardown`: stop the daemon and remove everything vlnet made.

use std::time::Duration;

use super::{state_error, DaemonError};
use crate::api;
use crate::bpf;
use crate::config::Config;
use crate::lock::{LockError, NodeLock};
use crate::netlink::{self, Netlink};
use crate::store::{state_path, NodeState};

/// How long `teardown` waits for a running daemon to exit.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

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
    crate::privileges::require("vlnet ctl teardown")?;
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
    bpf::remove_pins(&cfg.node.name)?;
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
