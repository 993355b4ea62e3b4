//! The controller's decisions: members, invites, sessions, and who holds
//! each MAC.
//!
//! # MAC ownership
//! A member is authenticated by its WireGuard key and trusted with nothing
//! else. Its claim of `(vni, mac)` (an advert, or an entry of its full sync)
//! is accepted only if:
//! - it names the member's own VTEP (its tunnel address) and a VNI granted to
//!   it, else [`RejectReason::Forged`];
//! - the member holds fewer than its quota of MACs on that VNI (waiting
//!   claims included), else [`RejectReason::Quota`];
//! - and the MAC is free (no route, and no static peer of the cloud holds it
//!   in the data plane), the member's already, or the move is authorized: an
//!   operator granted it (`vlnet ctl vm move`, used once) — else it is
//!   refused as [`RejectReason::NotOwner`] and waits in [`Claims`] until the
//!   holder releases the MAC (withdraws it or is removed) or a grant comes.
//!
//! The controller's own MACs (seen on its bridges, or declared with `vlnet
//! ctl vm moved`) always win: the cloud is the authority.
//!
//! Sequence numbers are the controller's: a takeover gets exactly the
//! holder's seq + 1, a free MAC the member's seq (or one above the tombstone
//! of its last holder), and a member that advertised another number than the
//! one installed is sent the installed route, so its mirror agrees. A jump
//! (to `u32::MAX`, say) never takes effect, and seqs wrap (RFC 1982), so no
//! MAC can be made unmovable.
//!
//! Accepted changes are relayed to every session serving the VNI; refused
//! ones change nothing anywhere and come back as [`Effect::Reject`].
//!
//! # Members per VNI
//! A VNI's flood list holds a bounded number of VTEPs, and every member of
//! a VNI is one: an invite that would give a VNI more members (joined, or
//! invited and not expired, a class invite counting its uses left) than
//! [`Policy::max_members_per_vni`] is refused with [`InviteError::VniFull`].
//!
//! # Leaving
//! A member may leave on its own ([`Message::Leave`], `vlnet ctl leave`):
//! it is removed exactly as `vlnet ctl client remove` removes it — key
//! revoked, MACs withdrawn everywhere and handed to claims that wait,
//! session ended.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnetwork::Ipv4Network;
use rand::RngCore;

mod direct;
mod neigh;

use super::claims::{Claim, Claims, MacKey};
use super::{CloudView, Effect, Now, RejectReason, Rejection};
use crate::control::macbook::{Applied, MacBook, Relay};
use crate::control::member_routes::{MemberMac, MemberMacs};
use crate::control::mobility::NodeId;
use crate::control::neighbook::{NeighBook, NeighSet};
use crate::control::registry::{
    ControllerAddrs, InviteRequest, MemberRecord, MoveGrant, Registry, RegistryError, Removed,
    MAX_TTL_SECS,
};
use crate::control::tunnel::DesiredPeer;
use crate::control::wire::{
    FullSync, Hello, Join, MacAdvert, MacWithdraw, Member, Members, Message, Welcome, ZoneVteps,
};
use crate::mac::MacAddr;
use crate::wg::Key;

/// MACs a member may hold per VNI unless the config says otherwise.
pub const DEFAULT_MAC_QUOTA: u32 = 1024;
/// How long a withdrawn MAC's tombstone is kept (longer than any message can
/// be delayed, so a late advert cannot bring the MAC back).
pub const TOMBSTONE_KEEP: Duration = Duration::from_mins(10);
/// How long a refused claim waits for the MAC's release.
pub const CLAIM_KEEP_SECS: u64 = 3600;

/// How long a member made by a class invite has to open its first control
/// session before it is removed and its seat given back (a join whose
/// answer was lost: the client joins again with the same token).
pub const CLASS_JOIN_GRACE_SECS: u64 = 120;

/// The controller's policy settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// MACs a member may hold (and wait for) per VNI.
    pub mac_quota: u32,
    /// Members (joined, or invited and not expired) one VNI may have.
    pub max_members_per_vni: u32,
    /// Networks in which a member's own address may be its MACs' EVPN next
    /// hop (`[evpn] direct`; see `controller/direct.rs`).
    pub direct: Vec<Ipv4Network>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            mac_quota: DEFAULT_MAC_QUOTA,
            max_members_per_vni: crate::config::DEFAULT_MAX_MEMBERS_PER_VNI,
            direct: Vec::new(),
        }
    }
}

/// Why an invite was refused.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    /// A VNI of the invite already has as many members as the policy allows.
    #[error(
        "VNI {vni} already has {members} members (joined, or invited and not expired): \
         wireguard.max_members_per_vni is {limit}; remove a client (`vlnet ctl client \
         remove NAME`), let an unused invite expire, or raise the limit"
    )]
    VniFull {
        /// The VNI.
        vni: u32,
        /// Its members and open invites.
        members: u32,
        /// The policy's limit.
        limit: u32,
    },
    /// The registry refused it.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Why a join was refused (the message goes back on the join connection).
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    /// The token came from another address than the one it reserves.
    #[error("invite token is for tunnel address {token}, not {from}")]
    WrongAddress {
        /// The token's address.
        token: Ipv4Addr,
        /// Where the join came from.
        from: Ipv4Addr,
    },
    /// The registry refused it (bad, expired, reused or revoked token).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// How the controller itself appears to members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its node name.
    pub name: String,
    /// Where members reach its WireGuard port.
    pub endpoint: SocketAddr,
    /// Its tunnel address (its VTEP towards members).
    pub tunnel_addr: Ipv4Addr,
}

/// A member's live session, as the controller relays to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    id: u64,
    vnis: BTreeSet<u32>,
    /// The member's underlay VTEP address, as its Hello named it.
    underlay: Option<Ipv4Addr>,
    /// The zone's VTEPs as last sent to it (`controller/direct.rs`).
    zone_sent: ZoneVteps,
}

/// Why an operator's move grant was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// No member of that name.
    #[error("no member named {0:?} (see `vlnet ctl client list`)")]
    NoMember(String),
    /// The member may not use the VNI.
    #[error("member {member:?} is not granted VNI {vni}")]
    NotGranted {
        /// The member.
        member: String,
        /// The VNI.
        vni: u32,
    },
    /// The lifetime is out of range.
    #[error("a grant lasts 1 s ..= 30 days, not {0} s")]
    Ttl(u64),
    /// The MAC is not a unicast host address.
    #[error("{0} is not a unicast MAC")]
    Mac(MacAddr),
}

/// A redeemed invite, for the join connection to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    /// The new member's name.
    pub name: String,
    /// The invite's one-time public key (its WireGuard peer goes once the
    /// client switched to its own key).
    pub one_time: Option<Key>,
    /// The answer.
    pub welcome: Welcome,
}

/// The controller's state and decisions (`Clone`: an operator's change is
/// decided on a copy, which replaces the state once saved).
#[derive(Debug, Clone)]
pub struct ControllerCore {
    me: Identity,
    registry: Registry,
    book: MacBook,
    claims: Claims,
    sessions: BTreeMap<String, Session>,
    policy: Policy,
    /// IP bindings of every MAC (ARP/ND suppression; `controller/neigh.rs`).
    neigh: NeighBook,
    /// The bindings snooped on the controller's own bridges at the last look.
    local_neigh: BTreeMap<MacKey, NeighSet>,
    /// Unix time of the last [`tick`](Self::tick).
    last_tick: u64,
    /// The EVPN zone's VTEPs per VNI, on a gateway (`controller/direct.rs`).
    zone: BTreeMap<u32, BTreeSet<Ipv4Addr>>,
}

impl ControllerCore {
    /// The controller `me` with `registry` (loaded from disk).
    #[must_use]
    pub fn new(me: Identity, registry: Registry, policy: Policy) -> Self {
        Self {
            book: MacBook::new(&me.name, me.tunnel_addr),
            me,
            registry,
            claims: Claims::default(),
            sessions: BTreeMap::new(),
            policy,
            neigh: NeighBook::default(),
            local_neigh: BTreeMap::new(),
            last_tick: 0,
            zone: BTreeMap::new(),
        }
    }

    /// The registry (to save, list, or look members up).
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The MACs placed behind members (every location but this node's),
    /// each with the addresses bound to it and, for a direct member's, the
    /// member's own address as next hop (`controller/direct.rs`).
    #[must_use]
    pub fn member_macs(&self) -> MemberMacs {
        let direct = self.direct_members();
        self.book
            .routes(None)
            .into_iter()
            .filter(|r| r.vtep != self.me.tunnel_addr)
            .map(|r| {
                let neighs = self.neigh.get(r.vni, r.mac).cloned().unwrap_or_default();
                let next_hop = direct.get(&r.vtep).copied();
                ((r.vni, r.mac), MemberMac { next_hop, neighs })
            })
            .collect()
    }

    /// The MAC book.
    #[must_use]
    pub fn book(&self) -> &MacBook {
        &self.book
    }

    /// Claims waiting for a MAC's release.
    #[must_use]
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// Members with a live session.
    #[must_use]
    pub fn connected(&self) -> BTreeSet<String> {
        self.sessions.keys().cloned().collect()
    }

    /// Whether `name` has a live session.
    #[must_use]
    pub fn is_connected(&self, name: &str) -> bool {
        self.sessions.contains_key(name)
    }

    // ----- invites and members -------------------------------------------

    /// `vlnet ctl client add`: opens an invite, unless a VNI it grants is
    /// full (see "Members per VNI"); returns its token.
    pub fn client_add(
        &mut self,
        request: &InviteRequest<'_>,
        addrs: &ControllerAddrs,
        now: Now,
        rng: &mut impl RngCore,
    ) -> Result<(String, Vec<Effect>), InviteError> {
        let limit = self.policy.max_members_per_vni;
        for &vni in request.vnis {
            // A new invite for the same name replaces the old one.
            let members = self.members_on(vni, now.unix, Some(request.name));
            if members >= limit {
                return Err(InviteError::VniFull {
                    vni,
                    members,
                    limit,
                });
            }
        }
        let token = self.registry.invite(request, addrs, now.unix, rng)?;
        Ok((token, vec![Effect::Persist, Effect::SyncPeers]))
    }

    /// Members of `vni` at `now` (unix seconds): joined ones and invites
    /// that have not expired, the invite named `except` left out.
    #[must_use]
    pub fn members_on(&self, vni: u32, now: u64, except: Option<&str>) -> u32 {
        let joined = self
            .registry
            .members
            .values()
            .filter(|m| m.vnis.contains(&vni))
            .count();
        let invited = self
            .registry
            .invites
            .iter()
            .filter(|(name, i)| {
                Some(name.as_str()) != except
                    && i.vnis.contains(&vni)
                    && !Registry::invite_expired(i, now)
            })
            .fold(0u32, |seats, (_, i)| seats.saturating_add(i.seats()));
        u32::try_from(joined)
            .unwrap_or(u32::MAX)
            .saturating_add(invited)
    }

    /// `vlnet ctl client remove`: revokes the key, withdraws the member's
    /// MACs everywhere (handing them to claims that wait), ends its session.
    pub fn client_remove(
        &mut self,
        name: &str,
        served: &[u32],
        now: Now,
        cloud: &dyn CloudView,
    ) -> Result<Vec<Effect>, RegistryError> {
        let removed = self
            .registry
            .remove(name)
            .ok_or_else(|| RegistryError::Unknown {
                name: name.to_owned(),
            })?;
        let mut out = vec![Effect::Persist, Effect::SyncPeers, Effect::Converge];
        if let Removed::Member(m) = removed {
            self.sessions.remove(name);
            out.push(Effect::EndSession {
                member: name.to_owned(),
            });
            self.claims.retain_member(name, |_| false);
            self.registry.prune_grants(now.unix);
            let applied = self.book.withdraw_vtep(m.tunnel_addr, now.mono);
            let released: Vec<MacKey> = applied.fdb.iter().map(fdb_key).collect();
            self.emit(None, applied, &mut out);
            for key in released {
                self.promote(key, now, cloud, &mut out);
            }
            out.extend(self.members_update(served));
        }
        Ok(out)
    }

    /// Redeems a client's [`Join`] arriving from tunnel address `ip` (the
    /// token's address: the member's own, or a class invite's join
    /// address). `pool` is the tunnel network a class's members get their
    /// addresses from.
    pub fn redeem(
        &mut self,
        join: &Join,
        ip: Ipv4Addr,
        pool: Ipv4Network,
        served: &[u32],
        now: Now,
    ) -> Result<(Redeemed, Vec<Effect>), RedeemError> {
        let token =
            crate::control::token::Token::parse(&join.token).map_err(RegistryError::from)?;
        if token.invite.tunnel_addr != ip {
            return Err(RedeemError::WrongAddress {
                token: token.invite.tunnel_addr,
                from: ip,
            });
        }
        let one_time = self
            .registry
            .invites
            .get(&token.invite.name)
            .map(|i| i.public_key);
        let (name, member) = self
            .registry
            .redeem(&join.token, join.public_key, pool, now.unix)?;
        let welcome = Welcome {
            name: Some(name.clone()),
            tunnel_addr: member.tunnel_addr,
            vnis: member.vnis.clone(),
            members: self.members_for(&name, served),
        };
        Ok((
            Redeemed {
                name,
                one_time,
                welcome,
            },
            vec![Effect::Persist],
        ))
    }

    /// A joined client closed its join connection: record where its
    /// WireGuard packets came from, tell the others, switch its key.
    pub fn joined(
        &mut self,
        name: &str,
        endpoint: Option<SocketAddr>,
        served: &[u32],
    ) -> Vec<Effect> {
        if let Some(m) = self.registry.members.get_mut(name) {
            m.endpoint = endpoint;
        }
        let mut out = vec![Effect::Persist, Effect::SyncPeers, Effect::Converge];
        out.extend(self.members_update(served));
        out
    }

    /// Members' WireGuard endpoints as the device sees them: a member that
    /// roamed is recorded and announced.
    pub fn endpoints_seen(
        &mut self,
        seen: &[(Key, Option<SocketAddr>)],
        served: &[u32],
    ) -> Vec<Effect> {
        let mut changed = false;
        for m in self.registry.members.values_mut() {
            let now = seen
                .iter()
                .find(|(k, _)| *k == m.public_key)
                .and_then(|(_, e)| *e);
            if now.is_some() && now != m.endpoint {
                m.endpoint = now;
                changed = true;
            }
        }
        if !changed {
            return Vec::new();
        }
        let mut out = vec![Effect::Persist];
        out.extend(self.members_update(served));
        out.extend(self.zone_updates());
        out
    }

    /// The WireGuard peers the controller must have at `now`: every member,
    /// and the one-time key of every invite that can still be redeemed (an
    /// expired, used or spent invite's key is no peer at all).
    #[must_use]
    pub fn desired_peers(&self, keepalive: u16, now: u64) -> Vec<DesiredPeer> {
        let members = self.registry.members.values().map(|m| DesiredPeer {
            public_key: m.public_key,
            endpoint: m.endpoint,
            tunnel_addr: m.tunnel_addr,
            keepalive,
        });
        let invites = self
            .registry
            .invites
            .values()
            .filter(|i| Registry::invite_open(i, now))
            .map(|i| DesiredPeer {
                public_key: i.public_key,
                endpoint: None,
                tunnel_addr: i.tunnel_addr,
                keepalive: 0,
            });
        members.chain(invites).collect()
    }

    /// Members' tunnel addresses per VNI (the data plane's peers).
    #[must_use]
    pub fn peers_by_vni(&self) -> BTreeMap<u32, BTreeSet<Ipv4Addr>> {
        let mut peers: BTreeMap<u32, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        for m in self.registry.members.values() {
            for &vni in &m.vnis {
                peers.entry(vni).or_default().insert(m.tunnel_addr);
            }
        }
        peers
    }

    /// The member list as member `name` should see it: the controller and
    /// every other member.
    #[must_use]
    pub fn members_for(&self, name: &str, served: &[u32]) -> Vec<Member> {
        let me = Member {
            name: self.me.name.clone(),
            public_key: self.registry.public_key(),
            endpoint: Some(self.me.endpoint),
            tunnel_addr: self.me.tunnel_addr,
            vtep: self.me.tunnel_addr,
            vnis: served.to_vec(),
        };
        let others = self
            .registry
            .members
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .map(|(n, m)| Member {
                name: n.clone(),
                public_key: m.public_key,
                endpoint: m.endpoint,
                tunnel_addr: m.tunnel_addr,
                vtep: m.tunnel_addr,
                vnis: m.vnis.clone(),
            });
        std::iter::once(me).chain(others).collect()
    }

    fn members_update(&self, served: &[u32]) -> Vec<Effect> {
        self.sessions
            .keys()
            .map(|name| Effect::Send {
                to: name.clone(),
                message: Message::Members(Members {
                    members: self.members_for(name, served),
                }),
            })
            .collect()
    }

    // ----- sessions -------------------------------------------------------

    /// Opens member `name`'s session (id `id`) on its [`Hello`] from tunnel
    /// address `ip`: returns the first messages to send it (our Hello, the
    /// member list, every route and IP binding on its VNIs), or why it is refused. A newer
    /// session of the same member replaces an older one. Once its queue
    /// takes messages, [`zone_updates`](Self::zone_updates) tells it the
    /// zone's VTEPs if it is direct.
    pub fn open_session(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        hello: &Hello,
        id: u64,
        served: &[u32],
    ) -> Result<Vec<Message>, Rejection> {
        let Some(member) = self.registry.members.get(name) else {
            return Err(reject(
                name,
                RejectReason::NotMember,
                None,
                "not a member".into(),
            ));
        };
        if hello.node != name || hello.vtep != ip {
            return Err(reject(
                name,
                RejectReason::Unexpected,
                None,
                format!("the member at {ip} is {name:?}"),
            ));
        }
        let vnis: BTreeSet<u32> = member.vnis.iter().copied().collect();
        let routes = self.book.routes(Some(&vnis));
        let bindings = self.neigh_sync(&vnis);
        self.sessions.insert(
            name.to_owned(),
            Session {
                id,
                vnis,
                underlay: hello.underlay,
                zone_sent: ZoneVteps::default(),
            },
        );
        let mut first = vec![
            Message::Hello(Hello {
                node: self.me.name.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                vtep: self.me.tunnel_addr,
                vnis: served.to_vec(),
                underlay: None,
            }),
            Message::Members(Members {
                members: self.members_for(name, served),
            }),
            Message::FullSync(FullSync { entries: routes }),
        ];
        first.extend(bindings);
        Ok(first)
    }

    /// Member `name`'s session `id` ended (a newer one is left alone):
    /// returns what the others must be told (one that shared its address
    /// may be direct now).
    pub fn close_session(&mut self, name: &str, id: u64) -> Vec<Effect> {
        if self.sessions.get(name).is_some_and(|s| s.id == id) {
            self.sessions.remove(name);
        }
        self.zone_updates()
    }

    /// A message on member `name`'s session (`served`: the VNIs this node
    /// serves, for the member list a departure changes).
    pub fn on_message(
        &mut self,
        name: &str,
        message: Message,
        served: &[u32],
        now: Now,
        cloud: &dyn CloudView,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let Some(ip) = self.registry.members.get(name).map(|m| m.tunnel_addr) else {
            out.push(Effect::EndSession {
                member: name.to_owned(),
            });
            return out;
        };
        match message {
            Message::MacAdvert(a) => self.claim(name, ip, a, now, cloud, &mut out),
            Message::MacWithdraw(w) => self.withdraw(name, ip, w, now, cloud, &mut out),
            Message::FullSync(s) => self.full_sync(name, ip, &s.entries, now, cloud, &mut out),
            Message::NeighAdvert(n) => self.neigh_advert(name, ip, &n, cloud, &mut out),
            Message::Keepalive => {}
            Message::Leave => {
                // A member of that name exists (looked up above).
                out.extend(
                    self.client_remove(name, served, now, cloud)
                        .unwrap_or_default(),
                );
            }
            other => out.push(Effect::Reject(reject(
                name,
                RejectReason::Unexpected,
                None,
                format!("{} ignored on a member session", other.kind().name()),
            ))),
        }
        out
    }

    // ----- the controller's own MACs and operators' commands ---------------

    /// The MACs on the controller's bridges now: new ones are advertised
    /// (taking them from whoever held them: the cloud is the authority),
    /// vanished ones withdrawn and handed to claims that wait.
    pub fn observe_local(
        &mut self,
        local: &BTreeSet<(u32, MacAddr)>,
        now: Now,
        cloud: &dyn CloudView,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let delta = self.book.observe_local(local, now.mono);
        let relays: Vec<Relay> = delta
            .adverts
            .iter()
            .map(|a| Relay::Advert(*a))
            .chain(delta.withdraws.iter().map(|w| Relay::Withdraw(*w)))
            .collect();
        out.extend(self.relay(None, &relays));
        if !delta.fdb.is_empty() {
            out.push(Effect::Fdb(delta.fdb));
        }
        for w in &delta.withdraws {
            self.promote((w.vni, w.mac), now, cloud, &mut out);
        }
        out
    }

    /// `vlnet ctl vm moved` on the controller: `mac` is local until `until`
    /// (monotonic) even before a bridge learns it.
    pub fn claim_local(&mut self, vni: u32, mac: MacAddr, until: Duration) {
        self.book.claim(vni, mac, until);
    }

    /// `vlnet ctl vm move MAC --vni N --to MEMBER`: lets `to` take `mac`
    /// once, within `ttl_secs`. A claim of it already waiting is granted at
    /// once.
    pub fn grant_move(
        &mut self,
        vni: u32,
        mac: MacAddr,
        to: &str,
        ttl_secs: u64,
        now: Now,
        cloud: &dyn CloudView,
    ) -> Result<Vec<Effect>, GrantError> {
        if !mac.is_unicast() || mac.is_zero() {
            return Err(GrantError::Mac(mac));
        }
        if !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
            return Err(GrantError::Ttl(ttl_secs));
        }
        let member = self
            .registry
            .members
            .get(to)
            .ok_or_else(|| GrantError::NoMember(to.to_owned()))?;
        if !member.vnis.contains(&vni) {
            return Err(GrantError::NotGranted {
                member: to.to_owned(),
                vni,
            });
        }
        let ip = member.tunnel_addr;
        self.registry.grant(MoveGrant {
            vni,
            mac,
            to: to.to_owned(),
            expires_at: now.unix.saturating_add(ttl_secs),
        });
        let mut out = vec![Effect::Persist];
        if let Some(c) = self.claims.take(to, (vni, mac)) {
            let claim = MacAdvert {
                vni,
                mac,
                vtep: ip,
                seq: c.seq,
            };
            self.claim(to, ip, claim, now, cloud, &mut out);
        }
        Ok(out)
    }

    /// Periodic upkeep (every second or so): expired invites leave
    /// WireGuard, lapsed grants and old tombstones go, claims whose MAC came
    /// free are granted, class members that never came give their seat
    /// back (`served`: the VNIs this node serves, for the member list).
    pub fn tick(&mut self, now: Now, cloud: &dyn CloudView, served: &[u32]) -> Vec<Effect> {
        let mut out = self.settle_class_joins(now, cloud, served);
        let expired = self.registry.invites.values().any(|i| {
            Registry::invite_expired(i, now.unix) && !Registry::invite_expired(i, self.last_tick)
        });
        if expired {
            out.push(Effect::SyncPeers);
        }
        self.last_tick = now.unix;
        if self.registry.prune_grants(now.unix) {
            out.push(Effect::Persist);
        }
        self.book.purge_withdrawn(now.mono, TOMBSTONE_KEEP);
        self.claims.expire(now.unix.saturating_sub(CLAIM_KEEP_SECS));
        for key in self.claims.keys() {
            self.promote(key, now, cloud, &mut out);
        }
        self.purge_neighs(&mut out);
        out
    }

    /// A class member that opened a session is settled; one that did not
    /// within [`CLASS_JOIN_GRACE_SECS`] of its join is removed (as `client
    /// remove` would) and its seat goes back to its invite.
    fn settle_class_joins(
        &mut self,
        now: Now,
        cloud: &dyn CloudView,
        served: &[u32],
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut lost = Vec::new();
        for (name, m) in &mut self.registry.members {
            if m.pending_class.is_none() {
                continue;
            }
            if self.sessions.contains_key(name) {
                m.pending_class = None;
                out.push(Effect::Persist);
            } else if now.unix >= m.joined_at.saturating_add(CLASS_JOIN_GRACE_SECS) {
                lost.push(name.clone());
            }
        }
        for name in lost {
            self.registry.give_back_seat(&name);
            if let Ok(effects) = self.client_remove(&name, served, now, cloud) {
                out.extend(effects);
            }
        }
        out
    }

    // ----- the ownership policy ---------------------------------------------

    /// Whether member `name` (tunnel address `ip`) speaks in its `what` for
    /// a VTEP or VNI not its own; if so the refusal is in `out`.
    fn forged(
        &self,
        name: &str,
        ip: Ipv4Addr,
        key: MacKey,
        vtep: Ipv4Addr,
        what: &str,
        out: &mut Vec<Effect>,
    ) -> bool {
        let granted = self
            .registry
            .members
            .get(name)
            .is_some_and(|m| m.vnis.contains(&key.0));
        if vtep == ip && granted {
            return false;
        }
        out.push(Effect::Reject(reject(
            name,
            RejectReason::Forged,
            Some(key),
            format!(
                "{what} for VTEP {vtep} on VNI {}: not the member's VTEP or VNI",
                key.0
            ),
        )));
        true
    }

    /// The cloud's static peer holding `key` in the data plane, if any (a
    /// member's or our own tunnel address in the FDB is a control-plane
    /// entry, not the cloud's).
    fn cloud_holder(&self, key: MacKey, cloud: &dyn CloudView) -> Option<Ipv4Addr> {
        cloud
            .fdb_holder(key.0, key.1)
            .filter(|v| *v != self.me.tunnel_addr && self.registry.member_at(*v).is_none())
    }

    /// Whether `name` has room for one more MAC on `vni` (`key`'s own
    /// waiting claim not counted twice).
    fn has_room(&self, name: &str, ip: Ipv4Addr, key: MacKey) -> bool {
        let waiting = self.claims.count(name, key.0) - u32::from(self.claims.waits(name, key));
        self.book.live_count(ip, key.0) + waiting < self.policy.mac_quota
    }

    /// Member `name` claims `a.mac` on `a.vni`.
    fn claim(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        a: MacAdvert,
        now: Now,
        cloud: &dyn CloudView,
        out: &mut Vec<Effect>,
    ) {
        let key = (a.vni, a.mac);
        if self.forged(name, ip, key, a.vtep, "advert", out) {
            return;
        }
        let held = self.book.get(a.vni, a.mac);
        if let Some(r) = held.filter(|r| r.vtep == ip) {
            self.claims.cancel(name, key);
            if r.seq != a.seq {
                // Ours already, at the seq the controller chose.
                out.push(Effect::Send {
                    to: name.to_owned(),
                    message: Message::MacAdvert(r),
                });
            }
            return;
        }
        if !self.has_room(name, ip, key) {
            out.push(Effect::Reject(reject(
                name,
                RejectReason::Quota,
                Some(key),
                format!(
                    "quota of {} MACs on VNI {} reached",
                    self.policy.mac_quota, a.vni
                ),
            )));
            return;
        }
        let holder = held
            .map(|r| r.vtep)
            .or_else(|| self.cloud_holder(key, cloud));
        if let Some(holder) = holder {
            if !self.registry.take_grant(a.vni, a.mac, name, now.unix) {
                self.claims.add(
                    key,
                    Claim {
                        member: name.to_owned(),
                        vtep: ip,
                        seq: a.seq,
                        since: now.unix,
                    },
                );
                out.push(Effect::Reject(reject(
                    name,
                    RejectReason::NotOwner,
                    Some(key),
                    format!("held by {holder}; the claim waits for its release or a `vlnet ctl vm move`"),
                )));
                return;
            }
            out.push(Effect::Persist);
        }
        let seq = match (held, self.book.tombstone(a.vni, a.mac)) {
            (Some(r), _) => r.seq.wrapping_add(1),
            (None, Some((_, t))) => t.wrapping_add(1),
            (None, None) => a.seq,
        };
        self.install(name, ip, key, seq, Some(a.seq), now, out);
    }

    /// Installs `key` behind member `name` at `seq` and relays it; the
    /// claimant is told too unless it advertised that very seq
    /// (`claimed`).
    #[allow(
        clippy::too_many_arguments,
        reason = "one decision's inputs; a struct would only rename them"
    )]
    fn install(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        key: MacKey,
        seq: u32,
        claimed: Option<u32>,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        let advert = MacAdvert {
            vni: key.0,
            mac: key.1,
            vtep: ip,
            seq,
        };
        let applied = self.book.advert(&advert, &NodeId::new(name), now.mono);
        if applied.relay.is_empty() {
            out.push(Effect::Reject(reject(
                name,
                RejectReason::Frozen,
                Some(key),
                "frozen as a duplicate (it moved too often); `vlnet ctl` unfreezes it".into(),
            )));
            return;
        }
        self.claims.cancel(name, key);
        let except = (claimed == Some(seq)).then_some(name);
        self.emit(except, applied, out);
    }

    /// Member `name` withdraws a MAC: removed if it holds it, then handed to
    /// the oldest claim waiting for it.
    fn withdraw(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        w: MacWithdraw,
        now: Now,
        cloud: &dyn CloudView,
        out: &mut Vec<Effect>,
    ) {
        let key = (w.vni, w.mac);
        if self.forged(name, ip, key, w.vtep, "withdrawal", out) {
            return;
        }
        self.claims.cancel(name, key);
        let Some(r) = self.book.get(w.vni, w.mac).filter(|r| r.vtep == ip) else {
            return; // not its MAC (a late withdrawal after a move): nothing to do
        };
        let applied = self
            .book
            .withdraw(&MacWithdraw { seq: r.seq, ..w }, now.mono);
        self.emit(Some(name), applied, out);
        self.promote(key, now, cloud, out);
    }

    /// Member `name`'s whole table (on every connect): what it no longer
    /// lists is withdrawn, each entry claimed.
    fn full_sync(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        entries: &[MacAdvert],
        now: Now,
        cloud: &dyn CloudView,
        out: &mut Vec<Effect>,
    ) {
        let listed: BTreeSet<MacKey> = entries.iter().map(|e| (e.vni, e.mac)).collect();
        self.claims.retain_member(name, |k| listed.contains(&k));
        let gone: Vec<MacAdvert> = self
            .book
            .routes(None)
            .into_iter()
            .filter(|r| r.vtep == ip && !listed.contains(&(r.vni, r.mac)))
            .collect();
        for r in gone {
            self.withdraw(name, ip, r.withdrawal(), now, cloud, out);
        }
        for e in entries {
            self.claim(name, ip, *e, now, cloud, out);
        }
    }

    /// `key` may have come free: the oldest waiting claim that still
    /// qualifies takes it.
    fn promote(&mut self, key: MacKey, now: Now, cloud: &dyn CloudView, out: &mut Vec<Effect>) {
        if self.book.get(key.0, key.1).is_some() || self.cloud_holder(key, cloud).is_some() {
            return;
        }
        while let Some(c) = self.claims.pop(key) {
            let Some(ip) = self
                .registry
                .members
                .get(&c.member)
                .filter(|m| m.tunnel_addr == c.vtep && m.vnis.contains(&key.0))
                .map(|m| m.tunnel_addr)
            else {
                continue;
            };
            let seq = self
                .book
                .tombstone(key.0, key.1)
                .map_or(c.seq, |(_, t)| t.wrapping_add(1));
            // Told to the claimant too: it was refused before.
            self.install(&c.member, ip, key, seq, None, now, out);
            return;
        }
    }

    /// Relays `applied` (except to `except`) and programs its FDB changes.
    fn emit(&self, except: Option<&str>, applied: Applied, out: &mut Vec<Effect>) {
        out.extend(self.relay(except, &applied.relay));
        if !applied.fdb.is_empty() {
            out.push(Effect::Fdb(applied.fdb));
        }
        for (vni, mac) in applied.left {
            out.push(Effect::ForgetLocal { vni, mac });
        }
    }

    /// Sends `relays` to every session but `except`'s that serves their VNI.
    fn relay(&self, except: Option<&str>, relays: &[Relay]) -> Vec<Effect> {
        let mut out = Vec::new();
        for (name, s) in &self.sessions {
            if Some(name.as_str()) == except {
                continue;
            }
            for r in relays.iter().filter(|r| s.vnis.contains(&r.vni())) {
                out.push(Effect::Send {
                    to: name.clone(),
                    message: match r {
                        Relay::Advert(a) => Message::MacAdvert(*a),
                        Relay::Withdraw(w) => Message::MacWithdraw(*w),
                    },
                });
            }
        }
        out
    }

    /// The record of member `name`.
    #[must_use]
    pub fn member(&self, name: &str) -> Option<&MemberRecord> {
        self.registry.members.get(name)
    }
}

fn fdb_key(change: &crate::control::macbook::FdbChange) -> MacKey {
    match *change {
        crate::control::macbook::FdbChange::Install { vni, mac, .. }
        | crate::control::macbook::FdbChange::Remove { vni, mac } => (vni, mac),
    }
}

fn reject(member: &str, reason: RejectReason, mac: Option<MacKey>, detail: String) -> Rejection {
    Rejection {
        member: member.to_owned(),
        reason,
        mac,
        detail,
    }
}
