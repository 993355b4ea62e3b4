//! The MACs local to this node, and the periodic upkeep: the data plane
//! reads the bridges of the served VNIs (what they learned on ports other
//! than vlnet's overlay port, [`crate::locals`]) and publishes the set; the
//! decision core turns every change, and every expired `vm moved` claim,
//! into adverts and withdrawals, and reports the IP bindings the data plane
//! snooped from its VMs. Every second the upkeep expires invites,
//! grants, tombstones and waiting claims.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::core::Effect;
use super::plane::ControlPlane;
use crate::mac::MacAddr;
use crate::netlink::Netlink;

/// How often the local MACs are looked at even without a change (claims
/// made with `vlnet ctl vm moved` expire).
pub const LOCAL_POLL: Duration = Duration::from_millis(500);
/// How often the upkeep runs.
pub const UPKEEP: Duration = Duration::from_secs(1);

impl ControlPlane {
    /// Follows the local MACs, advertising and withdrawing them: on every
    /// change the data plane publishes, when poked (`vm moved`), and every
    /// [`LOCAL_POLL`] (claims expire); until a member that started it in
    /// membership `epoch` leaves.
    pub(super) async fn watch_local_macs(self: Arc<Self>, epoch: u64) {
        let mut local = self.hooks.local_macs();
        let mut tick = tokio::time::interval(LOCAL_POLL);
        let mut frozen = BTreeSet::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.local_poke.notified() => {}
                changed = local.changed() => if changed.is_err() {
                    return; // the data plane is gone
                },
            }
            if !self.in_epoch(epoch) {
                return; // left the cluster
            }
            let observed = local.borrow_and_update().clone();
            self.observe_local(&observed);
            self.observe_local_neighs();
            frozen = self.report_frozen(&frozen);
        }
    }

    /// Reads the bridges once and applies what they show (the controller at
    /// start-up, before it accepts a member's claim).
    pub(super) async fn observe_local_once(&self) {
        let read = match Netlink::connect() {
            Ok(nl) => nl.local_macs(&self.hooks.vni_ports()).await,
            Err(e) => Err(e),
        };
        match read {
            Ok(local) => self.observe_local(&local),
            Err(e) => warn!(error = %e, "cannot read bridge FDBs"),
        }
    }

    /// Expires what has a lifetime (see the module doc), until a member
    /// that started it in membership `epoch` leaves.
    pub(super) async fn upkeep(self: Arc<Self>, epoch: u64) {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tick.tick().await;
            if !self.in_epoch(epoch) {
                return; // left the cluster
            }
            let (now, served) = (self.now(), self.served());
            let done = self
                .with_controller(|c, cloud| ((), c.tick(now, cloud, &served)))
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

    /// Reports the IP bindings snooped on this node (after its MACs, so
    /// that the controller holds a MAC before its bindings arrive). The
    /// zone's (snooped from static peers' frames) are the controller's own
    /// too; a member keeps them to itself (they are not its MACs').
    fn observe_local_neighs(&self) {
        let local = self.hooks.local_neighs();
        let zone = self.hooks.zone_neighs();
        let done = self
            .with_controller(|c, _| {
                let mut own = zone;
                own.extend(local.iter().map(|(k, s)| (*k, s.clone())));
                ((), c.observe_local_neighs(&own))
            })
            .or_else(|| {
                let now = self.now();
                self.with_member(|m| ((), m.observe_local_neighs(&local, now)))
            });
        if let Some(Err(e)) = done {
            warn!(error = %e, "cannot save control state");
        }
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
