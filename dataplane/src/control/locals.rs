//! Finding the MACs local to this node, and the periodic upkeep: every half
//! second the bridges of the served VNIs are read (what they learned on
//! ports other than vlnet's overlay port) and the decision core turns
//! changes into adverts and withdrawals; every second it expires invites,
//! grants, tombstones and waiting claims.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::core::Effect;
use super::plane::ControlPlane;
use crate::mac::MacAddr;
use crate::netlink::{Netlink, NetlinkError};

/// How often the bridges are read.
pub const LOCAL_POLL: Duration = Duration::from_millis(500);
/// How often the upkeep runs.
pub const UPKEEP: Duration = Duration::from_secs(1);

impl ControlPlane {
    /// Polls the local MACs forever, advertising and withdrawing them.
    pub(super) async fn watch_local_macs(self: Arc<Self>) {
        let nl = match Netlink::connect() {
            Ok(nl) => nl,
            Err(e) => {
                warn!(error = %e, "local MAC discovery disabled");
                return;
            }
        };
        let mut tick = tokio::time::interval(LOCAL_POLL);
        let mut frozen = BTreeSet::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.local_poke.notified() => {}
            }
            match self.local_macs(&nl).await {
                Ok(local) => self.observe_local(&local),
                Err(e) => warn!(error = %e, "cannot read bridge FDBs"),
            }
            frozen = self.report_frozen(&frozen);
        }
    }

    /// Reads the bridges once and applies what they show (start-up).
    pub(super) async fn observe_local_once(&self) {
        match Netlink::connect() {
            Ok(nl) => match self.local_macs(&nl).await {
                Ok(local) => self.observe_local(&local),
                Err(e) => warn!(error = %e, "cannot read bridge FDBs"),
            },
            Err(e) => warn!(error = %e, "cannot read bridge FDBs"),
        }
    }

    /// Expires what has a lifetime, forever (see the module doc).
    pub(super) async fn upkeep(self: Arc<Self>) {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tick.tick().await;
            let now = self.now();
            let done = self
                .with_controller(|c, cloud| ((), c.tick(now, cloud)))
                .or_else(|| self.with_member(|m| ((), m.tick(now))));
            if let Some(Err(e)) = done {
                warn!(error = %e, "cannot save control state");
            }
        }
    }

    /// Logs MACs that froze as duplicates since `before`; returns the set now.
    fn report_frozen(&self, before: &BTreeSet<(u32, MacAddr)>) -> BTreeSet<(u32, MacAddr)> {
        self.frozen_macs()
            .into_iter()
            .map(|f| {
                if !before.contains(&(f.vni, f.mac)) {
                    warn!(
                        vni = f.vni,
                        mac = %f.mac,
                        vtep = %f.vtep,
                        "duplicate MAC: it moved too often and is frozen where it is \
                         (two live copies of one VM?)"
                    );
                }
                (f.vni, f.mac)
            })
            .collect()
    }

    async fn local_macs(&self, nl: &Netlink) -> Result<BTreeSet<(u32, MacAddr)>, NetlinkError> {
        let mut out = BTreeSet::new();
        for (vni, bridge, port) in self.hooks.vni_ports() {
            let (Some(bridge), Some(port)) = (nl.link(&bridge).await?, nl.link(&port).await?)
            else {
                continue;
            };
            for mac in nl.bridge_learned_macs(bridge.index, port.index).await? {
                out.insert((vni, mac));
            }
        }
        Ok(out)
    }

    fn observe_local(&self, local: &BTreeSet<(u32, MacAddr)>) {
        let now = self.now();
        let done = self
            .with_controller(|c, cloud| ((), c.observe_local(local, now, cloud)))
            .or_else(|| {
                self.with_member(|m| {
                    let mut effects = m.observe_local(local, now);
                    // Saved at most once per poll, not once per message.
                    if m.take_dirty() {
                        effects.push(Effect::Persist);
                    }
                    ((), effects)
                })
            });
        if let Some(Err(e)) = done {
            warn!(error = %e, "cannot save control state");
        }
    }
}
