//! Finding the MACs local to this node: every half second the bridges of
//! the served VNIs are read (what they learned on ports other than vlnet's
//! overlay port), and the MAC book turns changes into adverts and
//! withdrawals.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::macbook::Relay;
use super::membership::membership_path;
use super::plane::{ControlPlane, Inner};
use super::wire::Message;
use crate::mac::MacAddr;
use crate::netlink::{Netlink, NetlinkError};

/// How often the bridges are read.
pub const LOCAL_POLL: Duration = Duration::from_millis(500);

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
            self.save_membership_if_dirty();
            frozen = self.report_frozen(&frozen);
        }
    }

    /// Logs MACs that froze as duplicates since `before`; returns the set now.
    fn report_frozen(&self, before: &BTreeSet<(u32, MacAddr)>) -> BTreeSet<(u32, MacAddr)> {
        let now: BTreeSet<(u32, MacAddr)> = self
            .frozen_macs()
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
            .collect();
        now
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
        let mut inner = self.inner();
        let delta = match &mut *inner {
            Inner::Controller(c) => {
                let delta = c.book.observe_local(local, now);
                let relays: Vec<Relay> = delta
                    .adverts
                    .iter()
                    .map(|a| Relay::Advert(*a))
                    .chain(delta.withdraws.iter().map(|w| Relay::Withdraw(*w)))
                    .collect();
                Self::relay(c, None, &relays);
                delta
            }
            Inner::Member(m) => {
                let Some(book) = m.book.as_mut() else {
                    return;
                };
                let delta = book.observe_local(local, now);
                if let Some(outbox) = &m.outbox {
                    for a in &delta.adverts {
                        let _ = outbox.send(Message::MacAdvert(*a));
                    }
                    for w in &delta.withdraws {
                        let _ = outbox.send(Message::MacWithdraw(*w));
                    }
                }
                m.dirty |= !delta.adverts.is_empty() || !delta.withdraws.is_empty();
                delta
            }
        };
        drop(inner);
        self.hooks.apply_fdb(&delta.fdb);
    }

    /// Writes a member's membership (with its current routes) if it changed.
    pub(super) fn save_membership_if_dirty(&self) {
        let mut inner = self.inner();
        let Inner::Member(m) = &mut *inner else {
            return;
        };
        if !m.dirty {
            return;
        }
        let (Some(ms), Some(book)) = (m.membership.as_mut(), m.book.as_ref()) else {
            return;
        };
        ms.routes = book.routes(None);
        let path = membership_path(&self.state_dir, &self.node);
        match ms.save(&path) {
            Ok(()) => m.dirty = false,
            Err(e) => warn!(path = %path.display(), error = %e, "cannot save membership"),
        }
    }
}
