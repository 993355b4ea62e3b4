//! Following a Proxmox SDN zone (`[proxmox]`): when the zone's files change
//! (an "Apply" rewrites `.running-config`; a copy may change `zones.cfg` or
//! `vnets.cfg`), the config is reloaded, so a peer or vnet added to the
//! zone is served without a restart and untouched VNIs keep forwarding. A
//! zone that no longer reads is refused like any bad reload: the running
//! config stays, and the reload's warning says why.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};
use vlnet_ebpf::abi::VLNET_ENCAP_LEN;

use crate::config::Config;
use crate::node::Node;
use crate::proxmox_sdn;

/// How often the zone's files are read (they are a few hundred bytes; the
/// cluster file system has no reliable change notification).
pub const SDN_POLL: Duration = Duration::from_secs(2);

/// What the watcher follows: the SDN directory of the config in force and
/// the fingerprint its files had when that config read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// `[proxmox] sdn`.
    pub dir: PathBuf,
    /// [`proxmox_sdn::fingerprint`] as the config was read.
    pub seen: Option<u64>,
}

impl Followed {
    /// What `cfg` follows (`None` without `[proxmox]`).
    #[must_use]
    pub fn of(cfg: &Config) -> Option<Self> {
        cfg.proxmox.as_ref().map(|p| Self {
            dir: p.sdn.clone(),
            seen: cfg.sdn_fingerprint,
        })
    }
}

/// Reloads the config whenever the files of the followed SDN directory
/// differ from what the config in force read (nothing to follow without
/// `[proxmox]`, until a reload adds it).
pub async fn follow_zone(node: Arc<Node>, mut followed: watch::Receiver<Option<Followed>>) {
    let mut tick = tokio::time::interval(SDN_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut current = followed.borrow_and_update().clone();
    loop {
        if followed.has_changed().unwrap_or(false) {
            current.clone_from(&followed.borrow_and_update());
        }
        let Some(Followed { dir, seen }) = current.clone() else {
            if followed.changed().await.is_err() {
                return;
            }
            current.clone_from(&followed.borrow_and_update());
            continue;
        };
        tick.tick().await;
        let probe = dir.clone();
        let now = tokio::task::spawn_blocking(move || proxmox_sdn::fingerprint(&probe))
            .await
            .ok()
            .flatten();
        if now == seen || followed.has_changed().unwrap_or(false) {
            continue;
        }
        // Not again for the same files, whatever the reload's outcome.
        current = Some(Followed {
            dir: dir.clone(),
            seen: now,
        });
        info!(dir = %dir.display(), "the Proxmox SDN zone changed; reloading the config");
        // The convergence task logs what the reload changed or why not.
        let _ = node.reload().await;
    }
}

/// Warns when the zone's MTU lets its VMs send frames larger than this
/// node's path carries (they would be dropped as `mtu_exceeded`).
pub fn check_zone_mtu(cfg: &Config, node: &Node) {
    let Some(zone_mtu) = cfg.sdn_zone.as_ref().and_then(|z| z.mtu) else {
        return;
    };
    let carried = node.facts().underlay_mtu.saturating_sub(VLNET_ENCAP_LEN);
    if zone_mtu > carried {
        warn!(
            zone_mtu,
            carried,
            "the Proxmox SDN zone's MTU is larger than what this node's path carries: \
             set the zone's MTU to {carried} or less (Datacenter → SDN → Zones)"
        );
    }
}
