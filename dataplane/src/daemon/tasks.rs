//! The daemon's background tasks, every one in the daemon's [`TaskSet`]
//! under its own name: the admin API, `/metrics`, next hops, FDB upkeep,
//! local MACs, MAC moves, traffic samples, RTT probes, the link watcher,
//! the EVPN agent (with `[evpn]`), the convergence task, the Proxmox SDN zone and systemd's watchdog. Then
//! the wait for a stop (a signal or the API), meanwhile reporting a task that
//! ends on its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{info, warn};

use super::start::Started;
use super::{evpn, follow, links, nexthops, sdn_watch, upkeep};
use crate::bypass::Bypass;
use crate::config::Config;
use crate::node::Node;
use crate::tasks::{Ended, TaskSet};
use crate::{api, locals, metrics, moves, notify, peer_rtt};

/// Reload requests waiting for the convergence task (more are refused:
/// one is enough to pick up the latest file).
const RELOAD_QUEUE: usize = 4;

/// Starts every background task of a started daemon in `tasks`; the
/// convergence task takes the data plane over.
pub fn spawn_all(tasks: &mut TaskSet, cfg: &Config, config_path: PathBuf, started: Started) {
    let Started {
        node,
        dataplane,
        plane,
        expected,
        events,
        api,
        metrics,
        evpn_kept,
    } = started;
    let (expected_tx, expected_rx) = watch::channel(expected);
    let relink = Arc::new(Notify::new());
    let (reload_tx, reloads) = mpsc::channel(RELOAD_QUEUE);
    let (sdn_dir, sdn_dir_rx) = watch::channel(sdn_watch::Followed::of(cfg));
    node.set_reloads(reload_tx);
    let api_node = node.clone();
    tasks.spawn("admin_api", async move {
        if let Err(e) = api::serve_listener(api, api_node).await {
            warn!(error = %e, "admin API stopped");
        }
    });
    let metrics_node = node.clone();
    tasks.spawn("metrics", async move {
        if let Err(e) = metrics::serve_listener(metrics, metrics_node).await {
            warn!(error = %e, "metrics endpoint stopped");
        }
    });
    tasks.spawn("next_hops", nexthops::refresh_next_hops(node.clone()));
    tasks.spawn(
        "age_fdb",
        upkeep::age_fdb(node.clone(), cfg.node.fdb_ageing_secs),
    );
    tasks.spawn("fdb_capacity", upkeep::enforce_fdb_capacity(node.clone()));
    let bypass = Bypass::new(Arc::clone(&dataplane.programs));
    tasks.spawn("local_macs", locals::watch(node.clone(), bypass));
    tasks.spawn("arrivals", upkeep::expire_arrivals(node.clone()));
    let (mover, arrivals) = (node.clone(), node.clone());
    tasks.spawn(
        "mac_moves",
        moves::watch(
            events,
            move |record| mover.record_move(record),
            move |vni, mac| arrivals.record_arrival(vni, mac),
        ),
    );
    tasks.spawn("traffic", upkeep::sample_traffic(node.clone()));
    let (peers_of, table) = (node.clone(), node.peer_rtt_table());
    tasks.spawn(
        "peer_rtt",
        peer_rtt::probe_peers(move || peers_of.next_hop_peers(), table),
    );
    let poked = node.clone();
    tasks.spawn(
        "links",
        links::watch(expected_rx, Arc::clone(&relink), move || {
            poked.poke_locals();
        }),
    );
    let evpn = evpn::spawn(tasks, cfg, &node, plane.as_deref(), evpn_kept);
    tasks.spawn(
        "converge",
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
            evpn,
        }),
    );
    sdn_watch::check_zone_mtu(cfg, &node);
    tasks.spawn("sdn_zone", sdn_watch::follow_zone(node.clone(), sdn_dir_rx));
    if let Some(every) = notify::watchdog_interval() {
        tasks.spawn("watchdog", watchdog(node, every));
    }
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
/// the config meanwhile (what `systemctl reload` and `kill -HUP` send), and
/// a task that ends on its own is reported (none should).
pub async fn wait_for_stop(node: &Node, tasks: &mut TaskSet) {
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
            (name, ended) = tasks.ended() => {
                if ended == Ended::Returned {
                    info!(task = name, "a background task ended; the daemon goes on without it");
                }
            }
        }
    }
}
