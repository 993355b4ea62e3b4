//! The EVPN agent's decisions, with no I/O: one [`MacBook`] for the EVPN
//! VNIs (this node's MACs and everyone's under the MAC Mobility rules), one
//! [`AdjRibIn`] per neighbor, and the VNIs' flood lists. Inputs are the
//! local MACs the data plane read from the bridges and what each speaker
//! reports; outputs ([`Effect`]) are UPDATEs per neighbor, NOTIFICATIONs,
//! FDB changes and flood lists for the shell (`evpn::run`) to carry out.
//!
//! Neighbors are route reflectors: two of them reflect the same routes, so
//! a remote MAC is withdrawn from the book only when no neighbor still
//! places it behind that VTEP, and a VTEP leaves a flood list when no
//! neighbor still lists it. A neighbor that holds more than the route bound
//! is closed with Cease / Maximum Number of Prefixes Reached (RFC 4486) and
//! its routes are withdrawn; the UPDATEs it had in flight are ignored until
//! it is established again. A session that drops without graceful restart
//! loses its routes at once; with it (RFC 4724) they stay, stale, until the
//! peer's End-of-RIB or the restart time ([`Effect::SweepAfter`]).
//!
//! After a restart of this node ([`Agent::resume`]) it keeps what the data
//! plane held (see [`super::restart`]) until every neighbor's End-of-RIB or
//! [`Agent::restart_over`]; then the MACs no route placed again go.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use netgauze_bgp_pkt::update::BgpUpdateMessage;

use super::advertise::{self, BuildError};
use super::notification::Notification;
use super::restart::Kept;
use super::rib::{AdjRibIn, Intent, IpBinding};
use super::speaker::Report;
use super::vni::VniTable;
use crate::control::macbook::{FdbChange, MacBook};
use crate::control::mobility::NodeId;
use crate::control::neighbook::NeighSet;
use crate::control::wire::MacAdvert;
use crate::mac::MacAddr;

/// Remote VTEPs per EVPN VNI.
pub type VtepsByVni = BTreeMap<u32, BTreeSet<Ipv4Addr>>;

/// The remote VTEPs of the EVPN VNIs, as the data plane needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteVteps {
    /// The flood lists: the VTEPs with a type-3 route (every EVPN VNI is
    /// listed, an empty list included).
    pub flood: VtepsByVni,
    /// The VTEPs a type-2 route places a MAC behind, whether or not they
    /// sent a type-3 route (yet): their FDB entries stay and their VXLAN is
    /// accepted, but they get no floods unless listed in `flood`.
    pub located: VtepsByVni,
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send an UPDATE to neighbor number `peer`.
    Send {
        /// The neighbor's index.
        peer: usize,
        /// The message.
        update: BgpUpdateMessage,
    },
    /// Close neighbor `peer`'s session with this NOTIFICATION.
    Cease {
        /// The neighbor's index.
        peer: usize,
        /// What to send.
        notification: Notification,
    },
    /// Program the FDB.
    Fdb(FdbChange),
    /// A MAC seen on this node's bridge lives elsewhere now: its bridge
    /// entry can go.
    Forget {
        /// The VNI.
        vni: u32,
        /// The MAC.
        mac: MacAddr,
    },
    /// The remote VTEPs changed: these are the new ones.
    Vteps(RemoteVteps),
    /// A remote MAC's addresses (from MAC/IP routes) are these now.
    Neigh {
        /// The VNI and MAC.
        key: (u32, MacAddr),
        /// Its addresses.
        set: NeighSet,
    },
    /// Call [`Agent::sweep`] with `peer` and `generation` after `after`
    /// (the graceful restart time of a neighbor that dropped).
    SweepAfter {
        /// The neighbor's index.
        peer: usize,
        /// Which drop of the neighbor it is for.
        generation: u64,
        /// The restart time.
        after: Duration,
    },
}

/// What `vlnet ctl evpn` shows of one neighbor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerView {
    /// The session is established.
    pub up: bool,
    /// MAC (type 2) routes held from it.
    pub mac_routes: usize,
    /// IMET (type 3) routes held from it.
    pub imet_routes: usize,
}

/// What `vlnet ctl evpn` shows of one EVPN VNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniView {
    /// The VNI.
    pub vni: u32,
    /// This node's MACs on it (advertised as type-2 routes).
    pub local_macs: usize,
    /// MACs behind other VTEPs (from type-2 routes).
    pub remote_macs: usize,
    /// Its flood list (from type-3 routes).
    pub vteps: Vec<Ipv4Addr>,
}

/// One neighbor's state.
#[derive(Debug, Clone)]
struct Peer {
    rib: AdjRibIn,
    up: bool,
    /// Closed for too many routes: its UPDATEs in flight are ignored.
    ceased: bool,
    /// How many times it went down (to match [`Effect::SweepAfter`]).
    generation: u64,
    /// The `(vni, mac, vtep)` it places.
    macs: HashSet<(u32, MacAddr, Ipv4Addr)>,
    /// The addresses its MAC/IP routes bind.
    ips: HashSet<IpBinding>,
}

/// The agent's state (see the module doc).
#[derive(Debug, Clone)]
pub struct Agent {
    book: MacBook,
    vnis: VniTable,
    my_vtep: Ipv4Addr,
    max_routes: usize,
    peers: Vec<Peer>,
    /// How many neighbors list each `(vni, vtep)` in a flood list.
    flood: BTreeMap<(u32, Ipv4Addr), usize>,
    /// How many `(neighbor, MAC)` routes place a MAC behind each
    /// `(vni, vtep)`.
    located: BTreeMap<(u32, Ipv4Addr), usize>,
    /// While this node restarts: what the data plane held, and the
    /// neighbors whose End-of-RIB has not come yet.
    restart: Option<(Kept, BTreeSet<usize>)>,
    /// How many `(neighbor, route)` bind each address of a remote MAC.
    remote_ips: BTreeMap<(u32, MacAddr), BTreeMap<IpAddr, usize>>,
    /// This node's MACs' addresses, advertised as MAC/IP routes.
    local_ips: BTreeMap<(u32, MacAddr), BTreeSet<IpAddr>>,
    /// Remote MACs whose hosts are IPv6 routers (their MAC/IP routes'
    /// Router flag).
    remote_routers: BTreeSet<(u32, MacAddr)>,
    /// This node's MACs whose hosts are IPv6 routers, as snooped.
    local_routers: BTreeSet<(u32, MacAddr)>,
    /// This node's MACs advertised with another next hop than its VTEP
    /// (`agent/direct.rs`).
    next_hops: BTreeMap<(u32, MacAddr), Ipv4Addr>,
    /// On a gateway, the `(vni, address)` of each direct member's type-3
    /// route (`agent/direct.rs`).
    direct_floods: BTreeSet<(u32, Ipv4Addr)>,
}

impl Agent {
    /// An agent for node `me` with VTEP `my_vtep`, serving the VNIs of
    /// `vnis`, with `peers` neighbors that may hold `max_routes` routes each.
    #[must_use]
    pub fn new(me: &str, my_vtep: Ipv4Addr, vnis: VniTable, peers: usize, max_routes: u32) -> Self {
        let peer = Peer {
            rib: AdjRibIn::new(my_vtep),
            up: false,
            ceased: false,
            generation: 0,
            macs: HashSet::new(),
            ips: HashSet::new(),
        };
        Self {
            book: MacBook::new(me, my_vtep),
            vnis,
            my_vtep,
            max_routes: usize::try_from(max_routes).unwrap_or(usize::MAX),
            peers: vec![peer; peers],
            flood: BTreeMap::new(),
            located: BTreeMap::new(),
            restart: None,
            remote_ips: BTreeMap::new(),
            local_ips: BTreeMap::new(),
            remote_routers: BTreeSet::new(),
            local_routers: BTreeSet::new(),
            next_hops: BTreeMap::new(),
            direct_floods: BTreeSet::new(),
        }
    }

    /// This node restarted with `kept` in its data plane: it stays there,
    /// as if a route held it, until every neighbor's End-of-RIB or
    /// [`restart_over`](Self::restart_over).
    pub fn resume(&mut self, kept: Kept) {
        self.restart = Some((kept, (0..self.peers.len()).collect()));
    }

    /// Whether this node is still restarting (see [`resume`](Self::resume)).
    #[must_use]
    pub fn restarting(&self) -> bool {
        self.restart.is_some()
    }

    /// The restart time passed: what the data plane held and no route
    /// placed again goes (and the kept MACs' addresses no route bound
    /// again), whether or not every End-of-RIB came.
    pub fn restart_over(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        let Some((kept, waiting)) = self.restart.take() else {
            return out;
        };
        let placed: HashSet<(u32, MacAddr)> = self
            .book
            .fdb_entries()
            .iter()
            .filter_map(|c| match *c {
                FdbChange::Install { vni, mac, .. } => Some((vni, mac)),
                FdbChange::Remove { .. } => None,
            })
            .collect();
        let gone: Vec<(u32, MacAddr)> = kept
            .macs
            .iter()
            .filter(|m| !placed.contains(m))
            .copied()
            .collect();
        tracing::info!(
            kept = kept.macs.len(),
            swept = gone.len(),
            without_end_of_rib = waiting.len(),
            "EVPN graceful restart over"
        );
        out.extend(
            gone.into_iter()
                .map(|(vni, mac)| Effect::Fdb(FdbChange::Remove { vni, mac })),
        );
        // The kept MACs' addresses that no MAC/IP route bound again go too
        // (the previous daemon's control-plane bindings).
        out.extend(
            kept.macs
                .iter()
                .filter(|key| !self.remote_ips.contains_key(key))
                .map(|&key| Effect::Neigh {
                    key,
                    set: NeighSet::default(),
                }),
        );
        out.push(Effect::Vteps(self.remote_vteps()));
        out
    }

    /// Neighbor `peer` sent End-of-RIB: the restart is over once all did.
    fn end_of_rib(&mut self, peer: usize) -> Vec<Effect> {
        match &mut self.restart {
            Some((_, waiting)) => {
                waiting.remove(&peer);
                if waiting.is_empty() {
                    self.restart_over()
                } else {
                    Vec::new()
                }
            }
            None => Vec::new(),
        }
    }

    /// The current remote VTEPs.
    #[must_use]
    pub fn remote_vteps(&self) -> RemoteVteps {
        let mut flood: VtepsByVni = self.vnis.iter().map(|r| (r.vni, BTreeSet::new())).collect();
        for &(vni, vtep) in self.flood.keys() {
            flood.entry(vni).or_default().insert(vtep);
        }
        let mut located = VtepsByVni::new();
        for &(vni, vtep) in self.located.keys() {
            located.entry(vni).or_default().insert(vtep);
        }
        let learned = RemoteVteps { flood, located };
        match &self.restart {
            Some((kept, _)) => kept.merged(learned),
            None => learned,
        }
    }

    /// Each neighbor's state, in the order they were given.
    #[must_use]
    pub fn peers(&self) -> Vec<PeerView> {
        self.peers
            .iter()
            .map(|p| {
                let (mac_routes, imet_routes) = p.rib.counts();
                PeerView {
                    up: p.up,
                    mac_routes,
                    imet_routes,
                }
            })
            .collect()
    }

    /// The FDB entries of every remote MAC location.
    #[must_use]
    pub fn fdb_entries(&self) -> Vec<FdbChange> {
        self.book.fdb_entries()
    }

    /// Every MAC location known, this node's own included.
    #[must_use]
    pub fn routes(&self) -> Vec<MacAdvert> {
        self.book.routes(None)
    }

    /// Each EVPN VNI's MAC counts and flood list.
    #[must_use]
    pub fn vni_views(&self) -> Vec<VniView> {
        let routes = self.routes();
        let flood = self.remote_vteps().flood;
        self.vnis
            .iter()
            .map(|r| {
                let here = routes.iter().filter(|a| a.vni == r.vni);
                let local_macs = here.clone().filter(|a| a.vtep == self.my_vtep).count();
                VniView {
                    vni: r.vni,
                    local_macs,
                    remote_macs: here.count() - local_macs,
                    vteps: flood.get(&r.vni).into_iter().flatten().copied().collect(),
                }
            })
            .collect()
    }

    /// Takes the MACs the data plane read from the bridges (of every VNI;
    /// those of other VNIs are left alone): new ones go out as type-2
    /// routes, vanished ones are withdrawn.
    pub fn local(&mut self, observed: &BTreeSet<(u32, MacAddr)>, now: Duration) -> Vec<Effect> {
        let ours: BTreeSet<(u32, MacAddr)> = observed
            .iter()
            .filter(|(vni, _)| self.vnis.get(*vni).is_some())
            .copied()
            .collect();
        let delta = self.book.observe_local(&ours, now);
        let mut out: Vec<Effect> = delta.fdb.into_iter().map(Effect::Fdb).collect();
        for a in &delta.adverts {
            self.to_all(&self.mac_update(a), &mut out);
            self.readvertise_local_ips((a.vni, a.mac), a.seq, &mut out);
        }
        for w in &delta.withdraws {
            self.withdraw_local_ips((w.vni, w.mac), &mut out);
            self.to_all(&self.mac_withdrawal(w.vni, w.mac), &mut out);
            // Gone from every neighbor with our withdrawal: whoever
            // announces it next is new (RFC 7432 §15), even at seq 0.
            self.book.forget_withdrawn(w.vni, w.mac);
        }
        out
    }

    /// Handles what neighbor `peer`'s speaker reported.
    pub fn report(&mut self, peer: usize, report: &Report, now: Duration) -> Vec<Effect> {
        let mut out = Vec::new();
        if peer >= self.peers.len() {
            return out;
        }
        match report {
            Report::Established(_) => {
                self.peers[peer].up = true;
                self.peers[peer].ceased = false;
                self.full_table(peer, &mut out);
            }
            Report::Refresh => self.full_table(peer, &mut out),
            Report::Update(u) => {
                if self.peers[peer].ceased || !self.peers[peer].up {
                    return out;
                }
                let applied = self.peers[peer].rib.apply(u, &self.vnis);
                self.intents(peer, applied.intents, now, &mut out);
                if applied.end_of_rib {
                    out.extend(self.end_of_rib(peer));
                }
                let (macs, imets) = self.peers[peer].rib.counts();
                if macs + imets > self.max_routes {
                    tracing::warn!(
                        peer,
                        routes = macs + imets,
                        limit = self.max_routes,
                        "EVPN neighbor sent more routes than max_routes_per_neighbor: closing"
                    );
                    let limit = u32::try_from(self.max_routes).unwrap_or(u32::MAX);
                    out.push(Effect::Cease {
                        peer,
                        notification: Notification::max_prefixes(limit),
                    });
                    self.peers[peer].ceased = true;
                    let gone = self.peers[peer].rib.clear();
                    self.intents(peer, gone, now, &mut out);
                }
            }
            Report::Down(down) => {
                let p = &mut self.peers[peer];
                p.up = false;
                p.generation += 1;
                match down.retain {
                    Some(after) if !p.ceased => {
                        p.rib.mark_stale();
                        out.push(Effect::SweepAfter {
                            peer,
                            generation: p.generation,
                            after,
                        });
                    }
                    _ => {
                        let gone = p.rib.clear();
                        self.intents(peer, gone, now, &mut out);
                    }
                }
            }
        }
        out
    }

    /// The restart time of neighbor `peer` ran out: its routes still stale
    /// go (nothing happens if it went down again since `generation`).
    pub fn sweep(&mut self, peer: usize, generation: u64, now: Duration) -> Vec<Effect> {
        let mut out = Vec::new();
        let Some(p) = self.peers.get_mut(peer) else {
            return out;
        };
        if p.generation != generation {
            return out;
        }
        let gone = p.rib.sweep_stale();
        self.intents(peer, gone, now, &mut out);
        out
    }

    /// Applies a neighbor's intents to the book and the remote VTEPs.
    fn intents(&mut self, peer: usize, intents: Vec<Intent>, now: Duration, out: &mut Vec<Effect>) {
        let mut vteps_changed = false;
        for intent in intents {
            match intent {
                Intent::Mac(a) => {
                    if self.peers[peer].macs.insert((a.vni, a.mac, a.vtep)) {
                        vteps_changed |= count_up(&mut self.located, (a.vni, a.vtep));
                    }
                    let origin = NodeId::new(&a.vtep.to_string());
                    let applied = self.book.advert(&a, &origin, now);
                    out.extend(applied.fdb.into_iter().map(Effect::Fdb));
                    for (vni, mac) in applied.left {
                        // Our route lost to a newer one: withdraw it.
                        self.withdraw_local_ips((vni, mac), out);
                        self.to_all(&self.mac_withdrawal(vni, mac), out);
                        out.push(Effect::Forget { vni, mac });
                    }
                }
                Intent::MacGone(w) => {
                    let key = (w.vni, w.mac, w.vtep);
                    if self.peers[peer].macs.remove(&key) {
                        vteps_changed |= count_down(&mut self.located, (w.vni, w.vtep));
                    }
                    if !self.peers.iter().any(|p| p.macs.contains(&key)) {
                        let applied = self.book.withdraw(&w, now);
                        out.extend(applied.fdb.into_iter().map(Effect::Fdb));
                        // Each session delivers in order and no neighbor
                        // holds the route: the same route advertised again
                        // is new, not late.
                        self.book.forget_withdrawn(w.vni, w.mac);
                    }
                }
                Intent::Ip(b) => out.extend(self.remote_ip(peer, b, true)),
                Intent::IpGone(b) => out.extend(self.remote_ip(peer, b, false)),
                Intent::Router { vni, mac } => out.extend(self.remote_router((vni, mac))),
                Intent::FloodAdd { vni, vtep } => {
                    vteps_changed |= count_up(&mut self.flood, (vni, vtep));
                }
                Intent::FloodRemove { vni, vtep } => {
                    vteps_changed |= count_down(&mut self.flood, (vni, vtep));
                }
            }
        }
        if vteps_changed {
            out.push(Effect::Vteps(self.remote_vteps()));
        }
    }

    /// Everything this node advertises, then End-of-RIB, to `peer`.
    fn full_table(&self, peer: usize, out: &mut Vec<Effect>) {
        let mut updates: Vec<Result<BgpUpdateMessage, BuildError>> = self
            .vnis
            .iter()
            .map(|r| advertise::imet_route(r, self.my_vtep))
            .collect();
        updates.extend(self.direct_imets());
        updates.extend(self.book.local_routes().iter().map(|a| self.mac_update(a)));
        updates.extend(self.local_ip_updates());
        updates.push(advertise::end_of_rib());
        for u in updates {
            self.to_peer(peer, u, out);
        }
    }

    /// The type-2 route of a local MAC.
    fn mac_update(&self, a: &MacAdvert) -> Result<BgpUpdateMessage, BuildError> {
        let routing = self.vnis.get(a.vni).ok_or_else(|| not_evpn(a.vni))?;
        advertise::mac_route(routing, self.next_hop((a.vni, a.mac)), a.mac, None, a.seq)
    }

    /// The withdrawal of a local MAC's type-2 route.
    fn mac_withdrawal(&self, vni: u32, mac: MacAddr) -> Result<BgpUpdateMessage, BuildError> {
        let routing = self.vnis.get(vni).ok_or_else(|| not_evpn(vni))?;
        advertise::withdraw(vec![advertise::mac_nlri(routing, mac, None)])
    }

    fn to_all(&self, update: &Result<BgpUpdateMessage, BuildError>, out: &mut Vec<Effect>) {
        for peer in 0..self.peers.len() {
            self.to_peer(peer, update.clone(), out);
        }
    }

    fn to_peer(
        &self,
        peer: usize,
        update: Result<BgpUpdateMessage, BuildError>,
        out: &mut Vec<Effect>,
    ) {
        if !self.peers[peer].up || self.peers[peer].ceased {
            return; // it gets the full table once established
        }
        match update {
            Ok(update) => out.push(Effect::Send { peer, update }),
            Err(e) => tracing::error!(peer, error = %e, "EVPN route not advertised"),
        }
    }
}

/// Counts one more holder of `key`; whether it is new.
fn count_up(counts: &mut BTreeMap<(u32, Ipv4Addr), usize>, key: (u32, Ipv4Addr)) -> bool {
    let n = counts.entry(key).or_default();
    *n += 1;
    *n == 1
}

/// Counts one holder of `key` less; whether it was the last.
fn count_down(counts: &mut BTreeMap<(u32, Ipv4Addr), usize>, key: (u32, Ipv4Addr)) -> bool {
    match counts.get_mut(&key) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            counts.remove(&key);
            true
        }
        None => false,
    }
}

/// The error of a route for a VNI the agent does not serve (cannot happen:
/// the book only holds EVPN VNIs' local MACs).
fn not_evpn(vni: u32) -> BuildError {
    BuildError(format!("VNI {vni} is not an EVPN VNI"))
}

mod direct;
mod ips;
#[cfg(test)]
mod tests;
