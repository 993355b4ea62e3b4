//! A member's decisions: it mirrors what the controller decided (the
//! controller alone says who holds a MAC and with which seq, so its
//! messages are taken as they are, within the member's own VNIs) and reports
//! the MACs on its own bridges. Its own claims are applied at once, so a VM
//! that just arrived is served here before the controller confirms; a claim
//! the controller refuses stays local to this node. The IP bindings of its
//! MACs (snooped by the data plane) are reported the same way, and the
//! controller's are programmed as they come.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use super::{Effect, Now};
use crate::control::macbook::{Applied, FdbChange, MacBook};
use crate::control::membership::Membership;
use crate::control::mobility::NodeId;
use crate::control::neighbook::{MacKey, NeighBook, NeighSet};
use crate::control::wire::{FullSync, Hello, MacAdvert, Message, NeighAdvert, ZoneVteps};
use crate::mac::MacAddr;

/// How often a binding the controller has not taken is sent again.
pub const NEIGH_RETRY: Duration = Duration::from_secs(30);

/// A joined member's state and decisions.
#[derive(Debug)]
pub struct MemberCore {
    membership: Membership,
    book: MacBook,
    controller: NodeId,
    connected: bool,
    /// The membership changed since it was last saved.
    dirty: bool,
    /// The controller's IP bindings, as programmed.
    neigh: NeighBook,
    /// The bindings snooped on this node's bridges at the last look.
    local_neigh: BTreeMap<MacKey, NeighSet>,
    /// When each of our MACs' bindings was last sent (monotonic).
    neigh_sent: BTreeMap<MacKey, Duration>,
}

impl MemberCore {
    /// A member resuming from its saved `membership` (its routes as last
    /// received).
    #[must_use]
    pub fn new(membership: Membership) -> Self {
        let controller = NodeId::new(&membership.controller.name);
        let mut book = MacBook::new(&membership.name, membership.tunnel_addr);
        for r in &membership.routes {
            book.follow_advert(r, &controller, Duration::ZERO);
        }
        Self {
            membership,
            book,
            controller,
            connected: false,
            dirty: false,
            neigh: NeighBook::default(),
            local_neigh: BTreeMap::new(),
            neigh_sent: BTreeMap::new(),
        }
    }

    /// The membership with the routes held now (what to save).
    #[must_use]
    pub fn membership(&self) -> Membership {
        Membership {
            routes: self.book.routes(None),
            ..self.membership.clone()
        }
    }

    /// The membership as joined (keys, addresses, members).
    #[must_use]
    pub fn joined(&self) -> &Membership {
        &self.membership
    }

    /// The MAC book.
    #[must_use]
    pub fn book(&self) -> &MacBook {
        &self.book
    }

    /// Takes whether the membership changed since the last call (and clears
    /// it): the caller saves it then.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The Hello that opens a session with the controller (`underlay`:
    /// this node's VTEP address on its underlay).
    #[must_use]
    pub fn hello(&self, underlay: Ipv4Addr) -> Hello {
        Hello {
            node: self.membership.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            vtep: self.membership.tunnel_addr,
            vnis: self.membership.vnis.clone(),
            underlay: Some(underlay),
        }
    }

    /// The session with the controller is up (after its Hello): returns our
    /// full table and the IP bindings of our MACs to send it.
    pub fn connected(&mut self) -> Vec<Message> {
        self.connected = true;
        let full = Message::FullSync(FullSync {
            entries: self.book.local_routes(),
        });
        let bindings = self
            .local_neigh
            .iter()
            .map(|(key, set)| Message::NeighAdvert(self.neigh_advert(*key, set)));
        std::iter::once(full).chain(bindings).collect()
    }

    /// Our advert of `set` bound to `key`.
    fn neigh_advert(&self, key: MacKey, set: &NeighSet) -> NeighAdvert {
        NeighAdvert {
            vni: key.0,
            mac: key.1,
            vtep: self.membership.tunnel_addr,
            ips: set.ips.iter().copied().collect(),
            router: set.router,
        }
    }

    /// The bindings snooped on this node's bridges now, by MAC: changes go
    /// to the controller while connected (a reconnect sends them all).
    pub fn observe_local_neighs(
        &mut self,
        local: &BTreeMap<MacKey, NeighSet>,
        now: Now,
    ) -> Vec<Effect> {
        let mut changed: Vec<(MacKey, NeighSet)> = local
            .iter()
            .filter(|(k, s)| self.local_neigh.get(k) != Some(s))
            .map(|(k, s)| (*k, s.clone()))
            .collect();
        changed.extend(
            self.local_neigh
                .keys()
                .filter(|k| !local.contains_key(k))
                .map(|k| (*k, NeighSet::default())),
        );
        self.local_neigh.clone_from(local);
        self.neigh_sent.retain(|k, _| local.contains_key(k));
        self.send_neighs(&changed, now)
    }

    /// Sends `sets` to the controller if connected.
    fn send_neighs(&mut self, sets: &[(MacKey, NeighSet)], now: Now) -> Vec<Effect> {
        if !self.connected {
            return Vec::new();
        }
        let to = &self.membership.controller.name;
        let mut out = Vec::new();
        for (key, set) in sets {
            self.neigh_sent.insert(*key, now.mono);
            out.push(Effect::Send {
                to: to.clone(),
                message: Message::NeighAdvert(self.neigh_advert(*key, set)),
            });
        }
        out
    }

    /// Our bindings the controller has not taken as they are (refused, say
    /// as a duplicate address that another MAC held), sent again every
    /// [`NEIGH_RETRY`]: they are taken once the other MAC is gone.
    fn retry_neighs(&mut self, now: Now) -> Vec<Effect> {
        let due: Vec<(MacKey, NeighSet)> = self
            .local_neigh
            .iter()
            .filter(|(k, s)| self.neigh.get(k.0, k.1) != Some(*s) && !s.is_empty())
            .filter(|(k, _)| {
                self.neigh_sent
                    .get(k)
                    .is_none_or(|at| now.mono.saturating_sub(*at) >= NEIGH_RETRY)
            })
            .map(|(k, s)| (*k, s.clone()))
            .collect();
        self.send_neighs(&due, now)
    }

    /// The controller's IP bindings, as programmed.
    #[must_use]
    pub fn neighs(&self) -> &NeighBook {
        &self.neigh
    }

    /// The session with the controller ended.
    pub fn disconnected(&mut self) {
        self.connected = false;
    }

    /// Whether a session with the controller is up.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// A message from the controller.
    pub fn on_message(&mut self, message: Message, now: Now) -> Vec<Effect> {
        let mine = |vni: u32| self.membership.vnis.contains(&vni);
        let applied = match message {
            Message::MacAdvert(a) if mine(a.vni) => {
                self.book.follow_advert(&a, &self.controller, now.mono)
            }
            Message::MacWithdraw(w) if mine(w.vni) => self.book.follow_withdraw(&w, now.mono),
            Message::FullSync(s) => {
                let entries: Vec<MacAdvert> =
                    s.entries.into_iter().filter(|e| mine(e.vni)).collect();
                // The bindings follow it afresh: what is not re-sent goes.
                let cleared: Vec<(MacKey, NeighSet)> = std::mem::take(&mut self.neigh)
                    .keys()
                    .into_iter()
                    .map(|k| (k, NeighSet::default()))
                    .collect();
                let applied = self
                    .book
                    .follow_full_sync(&self.controller, &entries, now.mono);
                self.dirty = true;
                let mut out = fdb_effects(applied);
                if !cleared.is_empty() {
                    out.push(Effect::Neigh(cleared));
                }
                return out;
            }
            Message::NeighAdvert(n) if mine(n.vni) => {
                let set = NeighSet {
                    ips: n.ips.into_iter().collect(),
                    router: n.router,
                };
                let changed = self.neigh.set((n.vni, n.mac), set);
                if changed.is_empty() {
                    return Vec::new();
                }
                return vec![Effect::Neigh(changed)];
            }
            Message::ZoneVteps(z) => return self.zone_vteps(z),
            Message::Members(list) => {
                if self.membership.members == list.members {
                    return Vec::new();
                }
                self.membership.members = list.members;
                self.dirty = true;
                return vec![Effect::Persist, Effect::SyncPeers, Effect::Converge];
            }
            _ => return Vec::new(),
        };
        self.dirty = true;
        fdb_effects(applied)
    }

    /// The zone's VTEPs that send us plain VXLAN on our underlay, from the
    /// controller: kept for our own VNIs only; a change is saved and
    /// converged (see [`Membership::zone`]).
    fn zone_vteps(&mut self, z: ZoneVteps) -> Vec<Effect> {
        let zone: BTreeMap<u32, BTreeSet<Ipv4Addr>> = z
            .vnis
            .into_iter()
            .filter(|v| self.membership.vnis.contains(&v.vni) && !v.vteps.is_empty())
            .map(|v| (v.vni, v.vteps.into_iter().collect()))
            .collect();
        if self.membership.zone == zone {
            return Vec::new();
        }
        self.membership.zone = zone;
        self.dirty = true;
        vec![Effect::Persist, Effect::Converge]
    }

    /// The MACs on this node's bridges now: new ones are claimed (the next
    /// seq), vanished ones withdrawn, both sent to the controller while
    /// connected (a reconnect sends the full table).
    pub fn observe_local(&mut self, local: &BTreeSet<(u32, MacAddr)>, now: Now) -> Vec<Effect> {
        let delta = self.book.observe_local(local, now.mono);
        let mut out = Vec::new();
        if self.connected {
            let to = self.membership.controller.name.clone();
            out.extend(delta.adverts.iter().map(|a| Effect::Send {
                to: to.clone(),
                message: Message::MacAdvert(*a),
            }));
            out.extend(delta.withdraws.iter().map(|w| Effect::Send {
                to: to.clone(),
                message: Message::MacWithdraw(*w),
            }));
        }
        if !delta.adverts.is_empty() || !delta.withdraws.is_empty() {
            self.dirty = true;
        }
        if !delta.fdb.is_empty() {
            out.push(Effect::Fdb(delta.fdb));
        }
        out
    }

    /// Periodic upkeep: old tombstones go, refused bindings are retried.
    pub fn tick(&mut self, now: Now) -> Vec<Effect> {
        self.book
            .purge_withdrawn(now.mono, super::controller::TOMBSTONE_KEEP);
        self.retry_neighs(now)
    }

    /// `vlnet ctl leave`: the message asking the controller to remove this
    /// member, or `None` without a session to send it on (the controller
    /// would not hear it).
    #[must_use]
    pub fn leave(&self) -> Option<Vec<Effect>> {
        self.connected.then(|| {
            vec![Effect::Send {
                to: self.membership.controller.name.clone(),
                message: Message::Leave,
            }]
        })
    }

    /// This member is no more (it left): the FDB entries it programmed for
    /// the cluster's MACs go.
    #[must_use]
    pub fn forget(&self) -> Vec<Effect> {
        let removals: Vec<FdbChange> = self
            .book
            .fdb_entries()
            .into_iter()
            .filter_map(|c| match c {
                FdbChange::Install { vni, mac, .. } => Some(FdbChange::Remove { vni, mac }),
                FdbChange::Remove { .. } => None,
            })
            .collect();
        if removals.is_empty() {
            Vec::new()
        } else {
            vec![Effect::Fdb(removals)]
        }
    }

    /// `vlnet ctl vm moved` on a member: `mac` is local until `until`.
    pub fn claim_local(&mut self, vni: u32, mac: MacAddr, until: Duration) {
        self.book.claim(vni, mac, until);
    }
}

/// A member programs what the controller decided; it never forgets a MAC on
/// its bridges on the controller's word (the next frame from its new place
/// fixes the bridge).
fn fdb_effects(applied: Applied) -> Vec<Effect> {
    if applied.fdb.is_empty() {
        Vec::new()
    } else {
        vec![Effect::Fdb(applied.fdb)]
    }
}
