//! The decision cores driven together without sockets: a controller, its
//! members' cores, and a bus that delivers every `Send` effect. Scenario
//! tests for each ownership rule, then property tests: any interleaving of
//! adverts, withdrawals, moves and removals from honest and malicious
//! members never gives a member a MAC it does not own.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::controller::{
    ControllerCore, Identity, InviteError, Policy, RedeemError, Redeemed, CLASS_JOIN_GRACE_SECS,
    TOMBSTONE_KEEP,
};
use super::member::MemberCore;
use super::{CloudView, Effect, NoCloud, Now, RejectReason};
use crate::control::macbook::FdbChange;
use crate::control::membership::{ControllerInfo, Membership};
use crate::control::neighbook::NeighSet;
use crate::control::registry::{
    ControllerAddrs, InviteRequest, MemberRecord, Registry, RegistryError,
};
use crate::control::wire::{FullSync, Hello, MacAdvert, MacWithdraw, Message};
use crate::mac::MacAddr;

const VNI: u32 = 100;
const OTHER_VNI: u32 = 200;
const CONTROLLER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const STATIC_PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 9);

fn vtep(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, 2 + u8::try_from(i).unwrap())
}

fn name(i: usize) -> String {
    format!("m{i}")
}

fn mac(i: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, i])
}

fn at(secs: u64) -> Now {
    Now {
        mono: Duration::from_secs(secs),
        unix: 1_800_000_000 + secs,
    }
}

/// MACs the data plane holds behind static peers.
#[derive(Default)]
struct Kernel(BTreeMap<(u32, MacAddr), Ipv4Addr>);

impl CloudView for Kernel {
    fn fdb_holder(&self, vni: u32, mac: MacAddr) -> Option<Ipv4Addr> {
        self.0.get(&(vni, mac)).copied()
    }
}

/// A registry of `n` members on VNI 100 (member 0 also on VNI 200), member
/// `i`'s key `[i + 1; 32]`.
fn registry(n: usize) -> Registry {
    let mut registry = Registry::generate(&mut StdRng::seed_from_u64(3));
    for i in 0..n {
        let vnis = if i == 0 {
            vec![VNI, OTHER_VNI]
        } else {
            vec![VNI]
        };
        registry.members.insert(
            name(i),
            MemberRecord {
                public_key: [u8::try_from(i).unwrap() + 1; 32],
                tunnel_addr: vtep(i),
                vnis,
                joined_at: 0,
                endpoint: None,
                pending_class: None,
            },
        );
    }
    registry
}

/// The controller's own identity, `ctl`.
fn controller_identity() -> Identity {
    Identity {
        name: "ctl".into(),
        endpoint: "198.18.0.1:51820".parse().unwrap(),
        tunnel_addr: CONTROLLER,
    }
}

/// A controller with `n` members on VNI 100 (member 0 also on VNI 200),
/// every member connected, and a bus between them.
struct Sim {
    ctl: ControllerCore,
    members: Vec<Option<MemberCore>>,
    kernel: Kernel,
    /// Everything the controller refused, in order.
    rejected: Vec<(String, RejectReason)>,
    /// FDB changes the controller programmed.
    ctl_fdb: Vec<FdbChange>,
    forgotten: Vec<(u32, MacAddr)>,
    /// IP bindings the controller programmed.
    ctl_neigh: Vec<((u32, MacAddr), NeighSet)>,
    now: u64,
}

impl Sim {
    fn new(n: usize, quota: u32) -> Self {
        let registry = registry(n);
        let ctl = ControllerCore::new(
            controller_identity(),
            registry.clone(),
            Policy {
                mac_quota: quota,
                ..Policy::default()
            },
        );
        let members = (0..n)
            .map(|i| {
                let r = &registry.members[&name(i)];
                Some(MemberCore::new(Membership {
                    name: name(i),
                    private_key: [9; 32],
                    tunnel_addr: r.tunnel_addr,
                    tunnel_prefix: 24,
                    controller: ControllerInfo {
                        name: "ctl".into(),
                        public_key: registry.public_key(),
                        endpoint: SocketAddr::from(([198, 18, 0, 1], 51820)),
                        tunnel_addr: CONTROLLER,
                        control_port: 7470,
                    },
                    vnis: r.vnis.clone(),
                    members: Vec::new(),
                    routes: Vec::new(),
                    zone: BTreeMap::new(),
                }))
            })
            .collect();
        let mut sim = Self {
            ctl,
            members,
            kernel: Kernel::default(),
            rejected: Vec::new(),
            ctl_fdb: Vec::new(),
            forgotten: Vec::new(),
            ctl_neigh: Vec::new(),
            now: 1,
        };
        for i in 0..n {
            sim.connect(i);
        }
        sim
    }

    fn now(&mut self) -> Now {
        self.now += 1;
        at(self.now)
    }

    fn connect(&mut self, i: usize) {
        let hello = Hello {
            node: name(i),
            version: "t".into(),
            vtep: vtep(i),
            vnis: vec![VNI],
            underlay: None,
        };
        let first = self
            .ctl
            .open_session(&name(i), vtep(i), &hello, i as u64, &[VNI])
            .unwrap();
        let now = self.now();
        let m = self.members[i].as_mut().unwrap();
        let mut effects = Vec::new();
        for msg in first {
            effects.extend(m.on_message(msg, now));
        }
        let first = m.connected();
        self.member_effects(i, effects);
        for message in first {
            self.member_says(i, message);
        }
    }

    /// Member `i` sends `message` to the controller; everything that follows
    /// is delivered.
    fn member_says(&mut self, i: usize, message: Message) {
        let now = self.now();
        let effects = self
            .ctl
            .on_message(&name(i), message, &[VNI], now, &self.kernel);
        self.controller_effects(effects);
    }

    fn controller_effects(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(e) = queue.pop_front() {
            match e {
                Effect::Send { to, message } => {
                    let i: usize = to[1..].parse().unwrap();
                    let now = self.now();
                    if let Some(m) = self.members[i].as_mut() {
                        let out = m.on_message(message, now);
                        self.member_effects(i, out);
                    }
                }
                Effect::Reject(r) => self.rejected.push((r.member, r.reason)),
                Effect::Fdb(f) => self.ctl_fdb.extend(f),
                Effect::Neigh(n) => self.ctl_neigh.extend(n),
                Effect::ForgetLocal { vni, mac } => self.forgotten.push((vni, mac)),
                Effect::EndSession { member } => {
                    let i: usize = member[1..].parse().unwrap();
                    self.members[i] = None;
                }
                Effect::Persist | Effect::SyncPeers | Effect::Converge => {}
            }
        }
    }

    fn member_effects(&mut self, i: usize, effects: Vec<Effect>) {
        for e in effects {
            if let Effect::Send { message, .. } = e {
                self.member_says(i, message);
            }
        }
    }

    /// Member `i`'s bridges now show `macs`.
    fn local(&mut self, i: usize, macs: &[(u32, MacAddr)]) {
        let now = self.now();
        let set: BTreeSet<(u32, MacAddr)> = macs.iter().copied().collect();
        let effects = self.members[i].as_mut().unwrap().observe_local(&set, now);
        self.member_effects(i, effects);
    }

    /// The controller's bridges now show `macs`.
    fn ctl_local(&mut self, macs: &[(u32, MacAddr)]) {
        let now = self.now();
        let set: BTreeSet<(u32, MacAddr)> = macs.iter().copied().collect();
        let effects = self.ctl.observe_local(&set, now, &self.kernel);
        self.controller_effects(effects);
    }

    fn grant(&mut self, vni: u32, mac: MacAddr, to: usize) {
        let now = self.now();
        let effects = self
            .ctl
            .grant_move(vni, mac, &name(to), 600, now, &self.kernel)
            .unwrap();
        self.controller_effects(effects);
    }

    fn remove(&mut self, i: usize) {
        let now = self.now();
        let effects = self
            .ctl
            .client_remove(&name(i), &[VNI], now, &self.kernel)
            .unwrap();
        self.controller_effects(effects);
    }

    /// Member `i` leaves (`vlnet ctl leave`).
    fn leave(&mut self, i: usize) {
        let asked = self.members[i].as_ref().unwrap().leave().unwrap();
        self.member_effects(i, asked);
    }

    /// Where the controller places `mac` on VNI 100.
    fn holder(&self, mac: MacAddr) -> Option<(Ipv4Addr, u32)> {
        self.ctl.book().get(VNI, mac).map(|r| (r.vtep, r.seq))
    }

    /// Where member `i`'s mirror places `mac` on VNI 100.
    fn seen_by(&self, i: usize, mac: MacAddr) -> Option<(Ipv4Addr, u32)> {
        self.members[i]
            .as_ref()
            .unwrap()
            .book()
            .get(VNI, mac)
            .map(|r| (r.vtep, r.seq))
    }

    fn advert(i: usize, m: MacAddr, seq: u32) -> Message {
        Message::MacAdvert(MacAdvert {
            vni: VNI,
            mac: m,
            vtep: vtep(i),
            seq,
        })
    }

    fn reasons(&self) -> Vec<RejectReason> {
        self.rejected.iter().map(|r| r.1).collect()
    }
}

#[test]
fn a_free_mac_goes_to_the_first_claim_and_everyone_learns_it() {
    let mut s = Sim::new(3, 16);
    s.local(0, &[(VNI, mac(1))]);
    assert_eq!(s.holder(mac(1)), Some((vtep(0), 0)));
    assert_eq!(s.seen_by(1, mac(1)), Some((vtep(0), 0)));
    assert_eq!(s.seen_by(2, mac(1)), Some((vtep(0), 0)));
    assert!(s.rejected.is_empty());
    assert!(s.ctl_fdb.contains(&FdbChange::Install {
        vni: VNI,
        mac: mac(1),
        vtep: vtep(0)
    }));
}

#[test]
fn a_member_cannot_take_a_mac_held_elsewhere_whatever_the_seq() {
    let mut s = Sim::new(3, 16);
    s.local(0, &[(VNI, mac(1))]);
    for seq in [0, 1, 2, 7, u32::MAX / 2, u32::MAX] {
        s.member_says(2, Sim::advert(2, mac(1), seq));
    }
    // A full sync is no way around it either.
    s.member_says(
        2,
        Message::FullSync(FullSync {
            entries: vec![MacAdvert {
                vni: VNI,
                mac: mac(1),
                vtep: vtep(2),
                seq: 9,
            }],
        }),
    );
    assert_eq!(s.holder(mac(1)), Some((vtep(0), 0)));
    assert_eq!(s.seen_by(1, mac(1)), Some((vtep(0), 0)));
    assert!(s.reasons().iter().all(|r| *r == RejectReason::NotOwner));
    assert_eq!(s.rejected.len(), 7);
    // Nothing was relayed: member 0 still holds it in its own book.
    assert_eq!(s.seen_by(0, mac(1)), Some((vtep(0), 0)));
}

#[test]
fn routes_for_another_vtep_or_vni_are_forged() {
    let mut s = Sim::new(3, 16);
    s.member_says(
        1,
        Message::MacAdvert(MacAdvert {
            vni: VNI,
            mac: mac(5),
            vtep: vtep(2),
            seq: 0,
        }),
    );
    s.member_says(
        1,
        Message::MacAdvert(MacAdvert {
            vni: OTHER_VNI,
            mac: mac(5),
            vtep: vtep(1),
            seq: 0,
        }),
    );
    s.member_says(
        1,
        Message::MacWithdraw(MacWithdraw {
            vni: VNI,
            mac: mac(5),
            vtep: vtep(0),
            seq: 0,
        }),
    );
    assert_eq!(s.reasons(), [RejectReason::Forged; 3]);
    assert!(s.ctl.book().is_empty());
}

#[test]
fn a_member_holds_at_most_its_quota_per_vni() {
    let mut s = Sim::new(2, 3);
    let macs: Vec<(u32, MacAddr)> = (1..=10).map(|i| (VNI, mac(i))).collect();
    s.local(1, &macs);
    assert_eq!(s.ctl.book().live_count(vtep(1), VNI), 3);
    assert_eq!(s.reasons(), [RejectReason::Quota; 7]);
    // Member 0 still gets its MAC, on this VNI and another.
    s.local(0, &[(VNI, mac(20)), (OTHER_VNI, mac(21))]);
    assert_eq!(s.holder(mac(20)), Some((vtep(0), 0)));
    assert!(s.ctl.book().get(OTHER_VNI, mac(21)).is_some());
}

#[test]
fn waiting_claims_count_against_the_quota() {
    let mut s = Sim::new(2, 2);
    s.local(0, &[(VNI, mac(1)), (VNI, mac(2))]);
    s.member_says(1, Sim::advert(1, mac(1), 1));
    s.member_says(1, Sim::advert(1, mac(2), 1));
    s.member_says(1, Sim::advert(1, mac(3), 0));
    assert_eq!(
        s.reasons(),
        [
            RejectReason::NotOwner,
            RejectReason::NotOwner,
            RejectReason::Quota
        ]
    );
    assert_eq!(s.ctl.claims().len(), 2);
}

#[test]
fn an_operators_grant_moves_a_mac_once_with_the_next_seq() {
    let mut s = Sim::new(3, 16);
    s.local(0, &[(VNI, mac(1))]);
    s.grant(VNI, mac(1), 1);
    // Member 1's VM arrived: its claim carries the next seq.
    s.local(1, &[(VNI, mac(1))]);
    assert_eq!(s.holder(mac(1)), Some((vtep(1), 1)));
    assert_eq!(s.seen_by(0, mac(1)), Some((vtep(1), 1)));
    assert_eq!(s.seen_by(2, mac(1)), Some((vtep(1), 1)));
    assert!(s.rejected.is_empty());
    // Used up: member 2 cannot follow on the same grant.
    s.member_says(2, Sim::advert(2, mac(1), 2));
    assert_eq!(s.holder(mac(1)), Some((vtep(1), 1)));
    assert_eq!(s.reasons(), [RejectReason::NotOwner]);
}

#[test]
fn a_grant_takes_a_jumping_claim_at_the_next_seq_only() {
    let mut s = Sim::new(2, 16);
    s.local(0, &[(VNI, mac(1))]);
    s.grant(VNI, mac(1), 1);
    s.member_says(1, Sim::advert(1, mac(1), u32::MAX));
    assert_eq!(
        s.holder(mac(1)),
        Some((vtep(1), 1)),
        "the controller picks the seq"
    );
}

#[test]
fn a_grant_after_the_claim_hands_the_mac_over_at_once() {
    let mut s = Sim::new(2, 16);
    s.local(0, &[(VNI, mac(1))]);
    s.local(1, &[(VNI, mac(1))]);
    assert_eq!(s.holder(mac(1)), Some((vtep(0), 0)));
    s.grant(VNI, mac(1), 1);
    assert_eq!(s.holder(mac(1)), Some((vtep(1), 1)));
    assert_eq!(s.seen_by(0, mac(1)), Some((vtep(1), 1)));
}

#[test]
fn a_release_hands_the_mac_to_the_oldest_waiting_claim() {
    let mut s = Sim::new(3, 16);
    s.local(0, &[(VNI, mac(1))]);
    s.local(2, &[(VNI, mac(1))]);
    s.local(1, &[(VNI, mac(1))]);
    // The VM left member 0 (its source stopped).
    s.local(0, &[]);
    assert_eq!(s.holder(mac(1)), Some((vtep(2), 1)));
    for i in 0..3 {
        assert_eq!(s.seen_by(i, mac(1)), Some((vtep(2), 1)), "member {i}");
    }
}

#[test]
fn the_controllers_own_macs_are_never_taken_and_always_win() {
    let mut s = Sim::new(2, 16);
    s.ctl_local(&[(VNI, mac(1))]);
    assert_eq!(s.seen_by(0, mac(1)), Some((CONTROLLER, 0)));
    s.member_says(0, Sim::advert(0, mac(1), 1));
    assert_eq!(s.holder(mac(1)), Some((CONTROLLER, 0)));
    // A member's MAC that shows up on the controller moves there.
    s.local(1, &[(VNI, mac(2))]);
    s.ctl_local(&[(VNI, mac(1)), (VNI, mac(2))]);
    assert_eq!(s.holder(mac(2)), Some((CONTROLLER, 1)));
    assert_eq!(s.seen_by(1, mac(2)), Some((CONTROLLER, 1)));
}

#[test]
fn a_mac_behind_a_static_peer_needs_a_grant() {
    let mut s = Sim::new(2, 16);
    s.kernel.0.insert((VNI, mac(1)), STATIC_PEER);
    s.member_says(0, Sim::advert(0, mac(1), 0));
    assert_eq!(s.reasons(), [RejectReason::NotOwner]);
    assert!(s.holder(mac(1)).is_none());
    // Once it ages out of the FDB, the waiting claim gets it.
    s.kernel.0.clear();
    let now = s.now();
    let effects = s.ctl.tick(now, &s.kernel, &[VNI]);
    s.controller_effects(effects);
    assert_eq!(s.holder(mac(1)), Some((vtep(0), 0)));
}

#[test]
fn migrating_the_controllers_vm_to_a_member_forgets_it_on_the_controller() {
    let mut s = Sim::new(2, 16);
    s.ctl_local(&[(VNI, mac(1))]);
    s.grant(VNI, mac(1), 1);
    s.local(1, &[(VNI, mac(1))]);
    assert_eq!(s.holder(mac(1)), Some((vtep(1), 1)));
    assert_eq!(s.forgotten, [(VNI, mac(1))]);
    assert!(s.ctl_fdb.contains(&FdbChange::Install {
        vni: VNI,
        mac: mac(1),
        vtep: vtep(1)
    }));
    // The stale bridge entry goes; the MAC does not come back to the cloud.
    s.ctl_local(&[]);
    assert_eq!(s.holder(mac(1)), Some((vtep(1), 1)));
}

#[test]
fn removing_a_member_withdraws_its_macs_and_ends_its_session() {
    let mut s = Sim::new(3, 16);
    s.local(2, &[(VNI, mac(7))]);
    s.local(1, &[(VNI, mac(7))]);
    s.remove(2);
    assert!(s.members[2].is_none());
    assert_eq!(
        s.holder(mac(7)),
        Some((vtep(1), 1)),
        "the waiting claim got it"
    );
    assert!(!s.ctl.registry().members.contains_key("m2"));
    assert!(!s.ctl.is_connected("m2"));
}

#[test]
fn a_member_that_leaves_is_removed_like_client_remove() {
    let mut s = Sim::new(3, 16);
    s.local(2, &[(VNI, mac(7)), (VNI, mac(8))]);
    s.local(1, &[(VNI, mac(7))]);
    assert_eq!(s.holder(mac(7)), Some((vtep(2), 0)));
    assert_eq!(s.seen_by(0, mac(8)), Some((vtep(2), 0)));
    let forget = s.members[2].as_ref().unwrap().forget();
    s.leave(2);
    assert!(s.members[2].is_none(), "its session ended");
    assert!(!s.ctl.registry().members.contains_key("m2"), "key revoked");
    assert_eq!(
        s.holder(mac(7)),
        Some((vtep(1), 1)),
        "the waiting claim got it"
    );
    assert_eq!(s.holder(mac(8)), None);
    assert_eq!(s.seen_by(0, mac(8)), None, "withdrawn at the others");
    // The leaver drops what it had programmed for the cluster's MACs (here
    // none: every MAC it knew was its own)...
    assert!(forget.is_empty(), "{forget:?}");
    // ...and a member that knows others' MACs removes them.
    let forget = s.members[0].as_ref().unwrap().forget();
    assert_eq!(
        forget,
        [Effect::Fdb(vec![FdbChange::Remove {
            vni: VNI,
            mac: mac(7)
        }])]
    );
}

#[test]
fn a_member_without_a_session_cannot_ask_to_leave() {
    let mut s = Sim::new(1, 16);
    let m = s.members[0].as_mut().unwrap();
    assert!(m.leave().is_some());
    m.disconnected();
    assert!(m.leave().is_none(), "the controller would not hear it");
}

/// A class invite `class` on [`VNI`] for `uses` joins, valid an hour from
/// `at(0)`: its token and the effects.
fn class_invite(
    ctl: &mut ControllerCore,
    addrs: &ControllerAddrs,
    uses: u32,
) -> (String, Vec<Effect>) {
    let request = InviteRequest {
        name: "class",
        vnis: &[VNI],
        ttl_secs: 3600,
        uses: Some(uses),
    };
    ctl.client_add(&request, addrs, at(0), &mut StdRng::seed_from_u64(9))
        .unwrap()
}

/// The join address a class `token` carries.
fn join_addr(token: &str) -> Ipv4Addr {
    crate::control::token::Token::parse(token)
        .unwrap()
        .invite
        .tunnel_addr
}

/// A client with key `[key; 32]` joins with class `token` at `at(1)`.
fn class_join(
    ctl: &mut ControllerCore,
    addrs: &ControllerAddrs,
    token: &str,
    key: u8,
) -> Result<Redeemed, RedeemError> {
    let join = crate::control::wire::Join {
        token: token.to_owned(),
        public_key: [key; 32],
    };
    ctl.redeem(&join, join_addr(token), addrs.tunnel, &[VNI], at(1))
        .map(|(r, _)| r)
}

#[test]
fn a_class_invite_counts_its_uses_left_and_each_join_is_a_member() {
    let (mut ctl, addrs) = controller_with_limit(4);
    let (token, effects) = class_invite(&mut ctl, &addrs, 3);
    assert_eq!(effects, [Effect::Persist, Effect::SyncPeers]);
    assert_eq!(ctl.members_on(VNI, at(0).unix, None), 3, "three seats");
    invite(&mut ctl, &addrs, "x", &[VNI], 60, at(0)).unwrap();
    assert!(
        matches!(
            invite(&mut ctl, &addrs, "y", &[VNI], 60, at(0)),
            Err(InviteError::VniFull { members: 4, .. })
        ),
        "no fifth seat"
    );
    let join_addr = join_addr(&token);
    let one_time = ctl.registry().invites["class"].public_key;
    for k in 1..=3u8 {
        let r = class_join(&mut ctl, &addrs, &token, k).unwrap();
        assert_eq!(r.name, format!("class-{k}"));
        assert_eq!(r.welcome.name.as_deref(), Some(r.name.as_str()));
        assert_ne!(r.welcome.tunnel_addr, join_addr, "an address of its own");
        assert_eq!(r.one_time, Some(one_time));
        let peers = ctl.desired_peers(25, at(1).unix);
        let keys: Vec<_> = peers.iter().map(|p| p.public_key).collect();
        // The one-time key stays a peer while uses are left, and only for
        // the join address.
        assert_eq!(keys.contains(&one_time), k < 3, "after join {k}");
        assert_eq!(
            ctl.members_on(VNI, at(1).unix, None),
            4,
            "seats taken, not added"
        );
    }
    let err = class_join(&mut ctl, &addrs, &token, 9).unwrap_err();
    assert!(
        matches!(err, RedeemError::Registry(RegistryError::Spent { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("has no uses left"), "{err}");
}

/// Two clients of a class joining at once share the token's key and join
/// address; one may lose the controller's answer. Its member never opens a
/// session: after the grace period it is removed and the seat goes back
/// (the one-time key is a peer again); a member that came is settled.
#[test]
fn a_class_member_that_never_comes_gives_its_seat_back() {
    let (mut ctl, addrs) = controller_with_limit(10);
    let (token, _) = class_invite(&mut ctl, &addrs, 2);
    let one_time = ctl.registry().invites["class"].public_key;
    let mut names = Vec::new();
    for k in 1..=2u8 {
        let r = class_join(&mut ctl, &addrs, &token, k).unwrap();
        names.push((r.name, r.welcome.tunnel_addr));
    }
    let keys = |ctl: &ControllerCore, t: u64| -> Vec<_> {
        ctl.desired_peers(25, t)
            .iter()
            .map(|p| p.public_key)
            .collect()
    };
    assert!(!keys(&ctl, 1).contains(&one_time), "spent");
    // The first comes (opens its session), the second never does.
    let (came, ip) = &names[0];
    let hello = Hello {
        node: came.clone(),
        version: "t".into(),
        vtep: *ip,
        vnis: vec![VNI],
        underlay: None,
    };
    ctl.open_session(came, *ip, &hello, 1, &[VNI]).unwrap();
    let effects = ctl.tick(at(2), &NoCloud, &[VNI]);
    assert!(effects.contains(&Effect::Persist), "{effects:?}");
    assert!(
        ctl.registry().members[came].pending_class.is_none(),
        "settled"
    );
    let grace = CLASS_JOIN_GRACE_SECS;
    assert!(!ctl
        .tick(at(grace), &NoCloud, &[VNI])
        .contains(&Effect::SyncPeers));
    let lost = &names[1].0;
    assert!(
        ctl.registry().members.contains_key(lost),
        "within the grace"
    );
    let effects = ctl.tick(at(grace + 1), &NoCloud, &[VNI]);
    assert!(effects.contains(&Effect::SyncPeers), "{effects:?}");
    assert!(!ctl.registry().members.contains_key(lost), "removed");
    assert!(
        ctl.registry().members.contains_key(came),
        "the one that came stays"
    );
    assert_eq!(ctl.registry().invites["class"].uses_left, Some(1));
    assert!(keys(&ctl, grace + 1).contains(&one_time), "a peer again");
    // Much later, the member that came is still there, connected or not.
    ctl.close_session(came, 1);
    ctl.tick(at(grace * 10), &NoCloud, &[VNI]);
    assert!(ctl.registry().members.contains_key(came));
}

#[test]
fn wrapped_sequence_numbers_keep_moving() {
    let mut s = Sim::new(2, 16);
    s.member_says(0, Sim::advert(0, mac(1), u32::MAX));
    assert_eq!(
        s.holder(mac(1)),
        Some((vtep(0), u32::MAX)),
        "first come, any seq"
    );
    s.grant(VNI, mac(1), 1);
    s.local(1, &[(VNI, mac(1))]);
    assert_eq!(
        s.holder(mac(1)),
        Some((vtep(1), 0)),
        "u32::MAX + 1 wraps to 0"
    );
    // The cloud can still take it.
    s.ctl_local(&[(VNI, mac(1))]);
    assert_eq!(s.holder(mac(1)), Some((CONTROLLER, 1)));
}

#[test]
fn a_reclaim_after_a_withdrawal_starts_above_the_tombstone() {
    let mut s = Sim::new(3, 16);
    s.local(0, &[(VNI, mac(1))]);
    s.grant(VNI, mac(1), 1);
    s.local(1, &[(VNI, mac(1))]);
    s.local(1, &[]);
    assert!(s.holder(mac(1)).is_none());
    // Member 2 never saw the MAC (a fresh book): it claims seq 0, the
    // controller installs 2 and tells it, so every mirror agrees.
    s.local(2, &[(VNI, mac(1))]);
    assert_eq!(s.holder(mac(1)), Some((vtep(2), 2)));
    for i in 0..3 {
        assert_eq!(s.seen_by(i, mac(1)), Some((vtep(2), 2)), "member {i}");
    }
}

#[test]
fn tombstones_waiting_claims_and_grants_expire() {
    let mut s = Sim::new(2, 16);
    s.local(0, &[(VNI, mac(1))]);
    s.local(0, &[]);
    s.grant(VNI, mac(2), 1);
    assert_eq!(s.ctl.registry().grants.len(), 1);
    let later = at(s.now + TOMBSTONE_KEEP.as_secs() + 3600 + 10);
    let effects = s.ctl.tick(later, &s.kernel, &[VNI]);
    assert!(effects.contains(&Effect::Persist), "{effects:?}");
    assert!(s.ctl.book().tombstone(VNI, mac(1)).is_none());
    assert!(s.ctl.registry().grants.is_empty());
}

#[test]
fn an_expired_invites_key_leaves_wireguard() {
    let mut registry = Registry::generate(&mut StdRng::seed_from_u64(5));
    let addrs = ControllerAddrs {
        endpoint: "198.18.0.1:51820".parse().unwrap(),
        tunnel: "198.19.0.1/24".parse().unwrap(),
        control_port: 7470,
    };
    let request = InviteRequest {
        name: "late",
        vnis: &[VNI],
        ttl_secs: 60,
        uses: None,
    };
    registry
        .invite(&request, &addrs, at(0).unix, &mut StdRng::seed_from_u64(6))
        .unwrap();
    let me = Identity {
        name: "ctl".into(),
        endpoint: addrs.endpoint,
        tunnel_addr: CONTROLLER,
    };
    let mut ctl = ControllerCore::new(me, registry, Policy::default());
    assert_eq!(ctl.desired_peers(25, at(59).unix).len(), 1);
    assert!(ctl.desired_peers(25, at(60).unix).is_empty());
    assert!(ctl.tick(at(30), &NoCloud, &[VNI]).is_empty());
    assert_eq!(ctl.tick(at(61), &NoCloud, &[VNI]), [Effect::SyncPeers]);
    assert!(ctl.tick(at(62), &NoCloud, &[VNI]).is_empty(), "once");
}

/// A controller with `limit` members per VNI and no members yet, and the
/// addresses it writes into tokens.
fn controller_with_limit(limit: u32) -> (ControllerCore, ControllerAddrs) {
    let registry = Registry::generate(&mut StdRng::seed_from_u64(7));
    let addrs = ControllerAddrs {
        endpoint: "198.18.0.1:51820".parse().unwrap(),
        tunnel: "198.19.0.1/24".parse().unwrap(),
        control_port: 7470,
    };
    let me = Identity {
        name: "ctl".into(),
        endpoint: addrs.endpoint,
        tunnel_addr: CONTROLLER,
    };
    let policy = Policy {
        max_members_per_vni: limit,
        ..Policy::default()
    };
    (ControllerCore::new(me, registry, policy), addrs)
}

fn invite(
    ctl: &mut ControllerCore,
    addrs: &ControllerAddrs,
    who: &str,
    vnis: &[u32],
    ttl_secs: u64,
    now: Now,
) -> Result<String, InviteError> {
    let request = InviteRequest {
        name: who,
        vnis,
        ttl_secs,
        uses: None,
    };
    ctl.client_add(&request, addrs, now, &mut StdRng::seed_from_u64(8))
        .map(|(token, _)| token)
}

#[test]
fn an_invite_beyond_the_vnis_member_limit_is_refused_and_says_why() {
    let (mut ctl, addrs) = controller_with_limit(3);
    for i in 0..3 {
        invite(&mut ctl, &addrs, &name(i), &[VNI], 3600, at(0)).unwrap();
    }
    assert_eq!(ctl.members_on(VNI, at(0).unix, None), 3);
    let err = invite(&mut ctl, &addrs, "fourth", &[OTHER_VNI, VNI], 3600, at(1)).unwrap_err();
    assert!(
        matches!(
            err,
            InviteError::VniFull {
                vni: VNI,
                members: 3,
                limit: 3
            }
        ),
        "{err:?}"
    );
    let says = err.to_string();
    assert!(
        says.contains("VNI 100") && says.contains("max_members_per_vni is 3"),
        "{says}"
    );
    assert!(
        !ctl.registry().invites.contains_key("fourth"),
        "nothing recorded"
    );

    // Another VNI is not full; a new invite for a name already invited
    // replaces that invite instead of adding a member.
    invite(&mut ctl, &addrs, "fourth", &[OTHER_VNI], 3600, at(2)).unwrap();
    invite(&mut ctl, &addrs, &name(0), &[VNI], 3600, at(3)).unwrap();
    assert_eq!(ctl.members_on(VNI, at(3).unix, None), 3);
}

#[test]
fn joined_members_count_and_expired_invites_free_their_place() {
    let (mut ctl, addrs) = controller_with_limit(2);
    invite(&mut ctl, &addrs, "short", &[VNI], 60, at(0)).unwrap();
    let mut registry = ctl.registry().clone();
    registry.members.insert(
        "joined".into(),
        MemberRecord {
            public_key: [1; 32],
            tunnel_addr: vtep(5),
            vnis: vec![VNI],
            joined_at: 0,
            endpoint: None,
            pending_class: None,
        },
    );
    let me = Identity {
        name: "ctl".into(),
        endpoint: addrs.endpoint,
        tunnel_addr: CONTROLLER,
    };
    let policy = Policy {
        max_members_per_vni: 2,
        ..Policy::default()
    };
    let mut ctl = ControllerCore::new(me, registry, policy);
    assert!(matches!(
        invite(&mut ctl, &addrs, "late", &[VNI], 60, at(30)),
        Err(InviteError::VniFull { members: 2, .. })
    ));
    // The first invite expired at 60 s: its place is free again.
    invite(&mut ctl, &addrs, "late", &[VNI], 60, at(61)).unwrap();
    assert_eq!(ctl.members_on(VNI, at(61).unix, None), 2);
}

#[test]
fn a_hello_that_does_not_match_the_member_is_refused() {
    let mut s = Sim::new(2, 16);
    let hello = Hello {
        node: name(1),
        version: "t".into(),
        vtep: vtep(1),
        vnis: vec![VNI],
        underlay: None,
    };
    let refused = s
        .ctl
        .open_session(&name(0), vtep(0), &hello, 99, &[VNI])
        .unwrap_err();
    assert_eq!(refused.reason, RejectReason::Unexpected);
}

#[test]
fn a_full_sync_withdraws_what_the_member_no_longer_has() {
    let mut s = Sim::new(2, 16);
    s.local(0, &[(VNI, mac(1)), (VNI, mac(2))]);
    s.member_says(
        0,
        Message::FullSync(FullSync {
            entries: vec![MacAdvert {
                vni: VNI,
                mac: mac(2),
                vtep: vtep(0),
                seq: 0,
            }],
        }),
    );
    assert!(s.holder(mac(1)).is_none());
    assert_eq!(s.seen_by(1, mac(1)), None);
    assert_eq!(s.holder(mac(2)), Some((vtep(0), 0)));
}

// ----- properties -------------------------------------------------------------

/// What members do, honest or not.
#[derive(Debug, Clone)]
enum Op {
    /// A malicious member (2 or 3) advertises anything.
    Advert {
        from: usize,
        vni: u32,
        mac: u8,
        vtep: usize,
        seq: u32,
    },
    /// A malicious member withdraws anything.
    Withdraw {
        from: usize,
        vni: u32,
        mac: u8,
        vtep: usize,
        seq: u32,
    },
    /// A malicious member sends a full sync of anything.
    FullSync {
        from: usize,
        macs: Vec<u8>,
        seq: u32,
    },
    /// A malicious member's bridges show these MACs (its honest-looking path).
    Local { from: usize, macs: Vec<u8> },
    /// An honest member's VM migrates to the other honest member, as an
    /// operator does it: grant, VM up there, VM gone here.
    Migrate { mac: u8 },
    /// The operator removes a malicious member.
    Remove { who: usize },
    /// A malicious member leaves on its own.
    Leave { who: usize },
    /// The clock runs: upkeep.
    Tick { secs: u64 },
}

/// MACs 1..=4 belong to honest members 0 and 1 (set up first); the
/// malicious members 2 and 3 may name any of 1..=8.
fn op() -> impl Strategy<Value = Op> {
    let seq = prop_oneof![0u32..4, Just(u32::MAX), any::<u32>()];
    let vni = prop_oneof![Just(VNI), Just(OTHER_VNI), Just(7u32)];
    prop_oneof![
        (2usize..4, vni.clone(), 1u8..=8, 0usize..4, seq.clone()).prop_map(
            |(from, vni, mac, vtep, seq)| Op::Advert {
                from,
                vni,
                mac,
                vtep,
                seq
            }
        ),
        (2usize..4, vni, 1u8..=8, 0usize..4, seq.clone()).prop_map(
            |(from, vni, mac, vtep, seq)| Op::Withdraw {
                from,
                vni,
                mac,
                vtep,
                seq
            }
        ),
        (2usize..4, prop::collection::btree_set(1u8..=8, 0..6), seq).prop_map(
            |(from, macs, seq)| Op::FullSync {
                from,
                macs: macs.into_iter().collect(),
                seq
            }
        ),
        (2usize..4, prop::collection::btree_set(1u8..=8, 0..6)).prop_map(|(from, macs)| {
            Op::Local {
                from,
                macs: macs.into_iter().collect(),
            }
        }),
        (1u8..=4).prop_map(|mac| Op::Migrate { mac }),
        (2usize..4).prop_map(|who| Op::Remove { who }),
        (2usize..4).prop_map(|who| Op::Leave { who }),
        (1u64..4000).prop_map(|secs| Op::Tick { secs }),
    ]
}

/// Quota in the property runs: room for all four honest MACs on one member
/// after migrations.
const QUOTA: u32 = 4;

/// The honest members' MACs and where the model says they live.
type Owners = BTreeMap<u8, usize>;

/// Member `i`'s MACs as its bridges show them.
fn locals(owner: &Owners, i: usize) -> Vec<(u32, MacAddr)> {
    owner
        .iter()
        .filter(|(_, o)| **o == i)
        .map(|(m, _)| (VNI, mac(*m)))
        .collect()
}

/// Carries out `op` (a removed member sends nothing).
fn run(s: &mut Sim, op: &Op, owner: &mut Owners, removed: &mut BTreeSet<usize>) {
    match op.clone() {
        Op::Advert {
            from,
            vni,
            mac: m,
            vtep: v,
            seq,
        } if !removed.contains(&from) => {
            s.member_says(
                from,
                Message::MacAdvert(MacAdvert {
                    vni,
                    mac: mac(m),
                    vtep: vtep(v),
                    seq,
                }),
            );
        }
        Op::Withdraw {
            from,
            vni,
            mac: m,
            vtep: v,
            seq,
        } if !removed.contains(&from) => {
            s.member_says(
                from,
                Message::MacWithdraw(MacWithdraw {
                    vni,
                    mac: mac(m),
                    vtep: vtep(v),
                    seq,
                }),
            );
        }
        Op::FullSync { from, macs, seq } if !removed.contains(&from) => {
            let entries = macs
                .iter()
                .map(|m| MacAdvert {
                    vni: VNI,
                    mac: mac(*m),
                    vtep: vtep(from),
                    seq,
                })
                .collect();
            s.member_says(from, Message::FullSync(FullSync { entries }));
        }
        Op::Local { from, macs } if !removed.contains(&from) => {
            let set: Vec<(u32, MacAddr)> = macs.iter().map(|m| (VNI, mac(*m))).collect();
            s.local(from, &set);
        }
        Op::Migrate { mac: m } => {
            // A live migration takes a while: spaced like this, moves never
            // trip duplicate detection (5 in 180 s freezes).
            s.now += 61;
            let from = owner[&m];
            let to = 1 - from;
            s.grant(VNI, mac(m), to);
            owner.insert(m, to);
            s.local(to, &locals(owner, to));
            s.local(from, &locals(owner, from));
        }
        Op::Remove { who } if !removed.contains(&who) => {
            s.remove(who);
            removed.insert(who);
        }
        Op::Leave { who } if !removed.contains(&who) => {
            s.leave(who);
            removed.insert(who);
        }
        Op::Tick { secs } => {
            s.now += secs;
            let now = s.now();
            let effects = s.ctl.tick(now, &s.kernel, &[VNI]);
            s.controller_effects(effects);
        }
        _ => {}
    }
}

/// The invariants: honest MACs are where the model says, no member exceeds
/// its quota, a removed member holds nothing, and every honest mirror agrees
/// with the controller on the MACs it does not hold itself.
fn holds(s: &Sim, op: &Op, owner: &Owners, removed: &BTreeSet<usize>) -> Result<(), TestCaseError> {
    for (m, o) in owner {
        prop_assert_eq!(
            s.holder(mac(*m)).map(|h| h.0),
            Some(vtep(*o)),
            "MAC {} after {:?}",
            m,
            op
        );
    }
    for i in 2..4 {
        for vni in [VNI, OTHER_VNI, 7] {
            prop_assert!(s.ctl.book().live_count(vtep(i), vni) <= QUOTA);
        }
        if removed.contains(&i) {
            prop_assert_eq!(s.ctl.book().live_count(vtep(i), VNI), 0);
        }
    }
    let truth: BTreeMap<MacAddr, (Ipv4Addr, u32)> = s
        .ctl
        .book()
        .routes(None)
        .into_iter()
        .filter(|r| r.vni == VNI)
        .map(|r| (r.mac, (r.vtep, r.seq)))
        .collect();
    for i in 0..2 {
        for (m, where_) in &truth {
            if where_.0 != vtep(i) {
                prop_assert_eq!(s.seen_by(i, *m), Some(*where_), "member {} on {}", i, m);
            }
        }
    }
    Ok(())
}

/// Sets up the honest members (member 0 holds MACs 1 and 2, member 1 holds
/// 3 and 4), runs `ops` and checks the invariants after each.
fn check(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut s = Sim::new(4, QUOTA);
    let mut owner: Owners = [(1, 0), (2, 0), (3, 1), (4, 1)].into();
    s.local(0, &locals(&owner, 0));
    s.local(1, &locals(&owner, 1));
    let mut removed = BTreeSet::new();
    for op in ops {
        run(&mut s, op, &mut owner, &mut removed);
        holds(&s, op, &owner, &removed)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn nobody_takes_a_mac_it_does_not_own(ops in prop::collection::vec(op(), 1..40)) {
        check(&ops)?;
    }
}

mod direct;
mod neigh;
