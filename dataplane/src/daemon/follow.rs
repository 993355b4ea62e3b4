//! The convergence task: it owns the data plane after start-up and
//! converges again whenever the control plane changes what it serves (a
//! join, a member added or removed, the tunnel coming up) or the EVPN
//! agent changes the remote VTEPs, an interface
//! vlnet uses changed under it (see `links`), or a reload asks for the
//! config file's new content (see `reload`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use tracing::{info, warn};

use super::converge::{converge, Bridges, Dataplane};
use super::links::Expected;
use super::reload::{self, ReloadError};
use crate::config::Config;
use crate::control::{ControlPlane, Dynamic};
use crate::model::ReloadReport;
use crate::netlink::{overlay_port_names, Netlink};
use crate::node::{Node, ReloadReply};
use crate::notify;

/// How long a burst of link notifications is let settle before converging
/// (an `ifreload` deletes and recreates a bridge in a few milliseconds).
const LINK_SETTLE: Duration = Duration::from_millis(50);

/// What the convergence task owns.
pub struct Follow {
    /// The config in force.
    pub cfg: Config,
    /// Where it was read from (a reload reads it again).
    pub config_path: PathBuf,
    /// The control plane, if the node has one.
    pub plane: Option<Arc<ControlPlane>>,
    /// Programs, links and the netlink session.
    pub dataplane: Dataplane,
    /// The running node.
    pub node: Arc<Node>,
    /// Poked by the link watcher.
    pub relink: Arc<Notify>,
    /// What the link watcher compares notifications with.
    pub expected: watch::Sender<Expected>,
    /// Reload requests (API, SIGHUP).
    pub reloads: mpsc::Receiver<ReloadReply>,
    /// The SDN directory the config in force follows (`[proxmox] sdn`).
    pub sdn_dir: watch::Sender<Option<super::sdn_watch::Followed>>,
    /// The link with the EVPN agent (with `[evpn]`).
    pub evpn: Option<super::evpn::EvpnLink>,
}

/// Why the task converges this time.
enum Cause {
    Control,
    Links,
    Reload(ReloadReply),
}

/// Runs the task (until the daemon stops).
pub async fn follow(mut f: Follow) {
    let mut changes = f.plane.as_ref().map(|p| p.changes());
    loop {
        let control_changed = async {
            match &mut changes {
                Some(c) => c.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let evpn_changed = async {
            match &mut f.evpn {
                Some(link) => link.vteps.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let cause = tokio::select! {
            alive = control_changed => {
                if !alive {
                    changes = None;
                    continue;
                }
                Cause::Control
            }
            alive = evpn_changed => {
                if !alive {
                    f.evpn = None;
                    continue;
                }
                Cause::Control
            }
            () = f.relink.notified() => {
                tokio::time::sleep(LINK_SETTLE).await;
                Cause::Links
            }
            Some(reply) = f.reloads.recv() => Cause::Reload(reply),
        };
        match cause {
            Cause::Reload(reply) => {
                notify::tell("RELOADING=1\nSTATUS=reloading the config");
                let outcome = apply_reload(&mut f).await;
                match &outcome {
                    Ok(report) => info!(
                        took_ms = report.took_ms,
                        changes = %report.changes.join("; "),
                        "config reloaded"
                    ),
                    Err(e) => warn!(error = %e, "reload refused; the running config stays"),
                }
                notify::tell(&format!("READY=1\nSTATUS={}", super::status_line(&f.node)));
                let _ = reply.send(outcome);
            }
            Cause::Control => {
                let cfg = f.cfg.clone();
                let before = served(&f.node);
                if let Err(e) = converge_now(&mut f, &cfg, Bridges::Create).await {
                    warn!(error = %e, "cannot apply the control plane's changes");
                    continue;
                }
                // VNIs a controller granted and no longer does (the member
                // left): their overlay ports go, as a reload's do.
                for vni in before.difference(&served(&f.node)) {
                    remove_overlay_port(*vni).await;
                }
            }
            Cause::Links => {
                let (began, cfg) = (Instant::now(), f.cfg.clone());
                match converge_now(&mut f, &cfg, Bridges::OnlyOurs).await {
                    Ok(()) => info!(
                        took_ms = began.elapsed().as_millis(),
                        "interfaces converged again"
                    ),
                    Err(e) => warn!(
                        error = %e,
                        "cannot converge after an interface change; waiting for the next"
                    ),
                }
            }
        }
    }
}

/// The VNIs the node serves now.
fn served(node: &Node) -> BTreeSet<u32> {
    node.facts().vnis.iter().map(|v| v.0).collect()
}

/// Converges to `cfg` and the control plane's state; hands the link
/// watcher what to expect.
async fn converge_now(
    f: &mut Follow,
    cfg: &Config,
    bridges: Bridges,
) -> Result<(), super::DaemonError> {
    let mut dynamic = f
        .plane
        .as_ref()
        .map_or_else(Dynamic::default, |p| p.dynamic());
    if let Some(link) = &mut f.evpn {
        dynamic.evpn = link.vteps.borrow_and_update().clone();
        if let Some(plane) = &f.plane {
            // A gateway tells its direct members the zone's VTEPs.
            plane.set_zone(&dynamic.evpn);
        }
    }
    let expected = converge(cfg, &dynamic, &mut f.dataplane, &f.node, bridges).await?;
    f.expected.send_replace(expected);
    if let Some(link) = &f.evpn {
        link.converged.send_modify(|n| *n += 1);
    }
    Ok(())
}

/// Reads the config file again and applies the difference; refuses, with
/// nothing changed, a config the daemon would not start with or one that
/// changes what needs a restart. If applying fails half way, the previous
/// config is applied again.
async fn apply_reload(f: &mut Follow) -> Result<ReloadReport, ReloadError> {
    let began = Instant::now();
    let new = Config::load(&f.config_path)?;
    let restart = reload::needs_restart(&f.cfg, &new);
    if !restart.is_empty() {
        return Err(ReloadError::NeedsRestart(restart));
    }
    let changes = reload::changes(&f.cfg, &new);
    if let Err(e) = converge_now(f, &new, Bridges::Create).await {
        let old = f.cfg.clone();
        let back = converge_now(f, &old, Bridges::Create).await;
        return Err(match back {
            Ok(()) => ReloadError::RolledBack(Box::new(e)),
            Err(again) => ReloadError::Failed {
                new: Box::new(e),
                back: Box::new(again),
            },
        });
    }
    for vni in reload::removed_vnis(&f.cfg, &new) {
        remove_overlay_port(vni).await;
    }
    super::sdn_watch::check_zone_mtu(&new, &f.node);
    f.sdn_dir.send_replace(super::sdn_watch::Followed::of(&new));
    f.cfg = new;
    Ok(ReloadReport {
        changes,
        took_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Deletes the overlay port of a VNI no longer served (its programs were
/// detached by the convergence; the veth pair goes with either end).
async fn remove_overlay_port(vni: u32) {
    let (port, _) = overlay_port_names(vni);
    let deleted = async {
        let nl = Netlink::connect()?;
        if nl.link(&port).await?.is_some() {
            nl.delete_link(&port).await?;
        }
        Ok::<(), crate::netlink::NetlinkError>(())
    };
    match deleted.await {
        Ok(()) => info!(
            vni,
            port, "removed the overlay port of a VNI no longer served"
        ),
        Err(e) => warn!(vni, port, error = %e, "cannot remove the overlay port"),
    }
}
