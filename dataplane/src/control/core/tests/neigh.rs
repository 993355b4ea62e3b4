//! IP bindings (ARP/ND suppression) through the decision cores: a member
//! binds addresses only to MACs it holds, never one bound to a MAC someone
//! else holds (the cloud's VMs' addresses cannot be poisoned), within its
//! quota; the controller's own bindings win; bindings move with their MAC.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::*;
use crate::control::core::member::NEIGH_RETRY;
use crate::control::neighbook::NeighSet;
use crate::control::wire::NeighAdvert;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn bound(macs: &[(MacAddr, &[u8])]) -> BTreeMap<(u32, MacAddr), NeighSet> {
    macs.iter()
        .map(|(m, ips)| {
            let set = NeighSet {
                ips: ips.iter().map(|i| ip(*i)).collect(),
                router: false,
            };
            ((VNI, *m), set)
        })
        .collect()
}

impl Sim {
    /// Member `i`'s data plane snooped `macs`' addresses.
    fn member_bindings(&mut self, i: usize, macs: &[(MacAddr, &[u8])]) {
        let local = bound(macs);
        let now = self.now();
        let effects = self.members[i]
            .as_mut()
            .unwrap()
            .observe_local_neighs(&local, now);
        self.member_effects(i, effects);
    }

    /// The controller's data plane snooped `macs`' addresses.
    fn ctl_bindings(&mut self, macs: &[(MacAddr, &[u8])]) {
        let effects = self.ctl.observe_local_neighs(&bound(macs));
        self.controller_effects(effects);
    }

    /// The MAC the controller binds `.last` to.
    fn owner(&self, last: u8) -> Option<MacAddr> {
        self.ctl.neighs().owner(VNI, ip(last))
    }

    /// The MAC member `i`'s mirror binds `.last` to.
    fn owner_seen_by(&self, i: usize, last: u8) -> Option<MacAddr> {
        self.members[i]
            .as_ref()
            .unwrap()
            .neighs()
            .owner(VNI, ip(last))
    }
}

#[test]
fn a_member_cannot_bind_a_cloud_vms_address() {
    let mut s = Sim::new(3, 16);
    // The gateway's VM (the cloud) holds .1.
    s.ctl_local(&[(VNI, mac(1))]);
    s.ctl_bindings(&[(mac(1), &[1])]);
    assert_eq!(s.owner_seen_by(2, 1), Some(mac(1)));
    // A member's VM claims .1 (and its own .5).
    s.local(0, &[(VNI, mac(5))]);
    s.member_bindings(0, &[(mac(5), &[1, 5])]);
    assert_eq!(s.reasons(), [RejectReason::DuplicateIp]);
    assert_eq!(s.owner(1), Some(mac(1)), "the cloud's address stays");
    assert_eq!(s.owner(5), Some(mac(5)), "the member's own is accepted");
    for i in 1..3 {
        assert_eq!(s.owner_seen_by(i, 1), Some(mac(1)));
        assert_eq!(s.owner_seen_by(i, 5), Some(mac(5)));
    }
    // The controller programmed the member's binding, never the refused one.
    let programmed: Vec<_> = s.ctl_neigh.iter().filter(|(k, _)| k.1 == mac(5)).collect();
    assert_eq!(programmed.len(), 1);
    assert_eq!(programmed[0].1.ips, [ip(5)].into());
}

#[test]
fn another_members_address_is_refused_and_a_free_one_taken() {
    let mut s = Sim::new(3, 16);
    s.local(0, &[(VNI, mac(5))]);
    s.member_bindings(0, &[(mac(5), &[5])]);
    s.local(1, &[(VNI, mac(6))]);
    s.member_bindings(1, &[(mac(6), &[5, 6])]);
    assert_eq!(s.reasons(), [RejectReason::DuplicateIp]);
    assert_eq!((s.owner(5), s.owner(6)), (Some(mac(5)), Some(mac(6))));
    // Once member 0's VM is gone (MAC withdrawn, tombstone purged), .5 is free.
    s.local(0, &[]);
    s.member_bindings(0, &[]);
    s.now += TOMBSTONE_KEEP.as_secs() + 1;
    let now = s.now();
    let effects = s.ctl.tick(now, &s.kernel, &[VNI]);
    s.controller_effects(effects);
    assert_eq!(s.owner(5), None, "purged with its MAC");
    assert_eq!(s.owner_seen_by(2, 5), None);
    // Member 1's refused binding is retried (unchanged) and now taken.
    s.now += NEIGH_RETRY.as_secs();
    let now = s.now();
    let effects = s.members[1].as_mut().unwrap().tick(now);
    s.member_effects(1, effects);
    assert_eq!(s.owner(5), Some(mac(6)));
    assert_eq!(s.owner_seen_by(2, 5), Some(mac(6)));
    // Nothing left to retry.
    s.now += NEIGH_RETRY.as_secs();
    let now = s.now();
    assert!(s.members[1].as_mut().unwrap().tick(now).is_empty());
}

#[test]
fn bindings_for_a_mac_not_held_or_another_vtep_are_refused() {
    let mut s = Sim::new(2, 16);
    s.local(1, &[(VNI, mac(6))]);
    let claim = |vtep_of: usize, m: MacAddr| {
        Message::NeighAdvert(NeighAdvert {
            vni: VNI,
            mac: m,
            vtep: vtep(vtep_of),
            ips: vec![ip(9)],
            router: false,
        })
    };
    s.member_says(0, claim(0, mac(6)));
    s.member_says(0, claim(1, mac(6)));
    assert_eq!(s.reasons(), [RejectReason::NotOwner, RejectReason::Forged]);
    assert_eq!(s.owner(9), None);
}

#[test]
fn bindings_count_against_the_quota() {
    let mut s = Sim::new(1, 2);
    s.local(0, &[(VNI, mac(5))]);
    s.member_bindings(0, &[(mac(5), &[1, 2, 3])]);
    assert_eq!(s.reasons(), [RejectReason::Quota]);
    assert_eq!(s.owner(1), None);
    s.member_bindings(0, &[(mac(5), &[1, 2])]);
    assert_eq!((s.owner(1), s.owner(2)), (Some(mac(5)), Some(mac(5))));
}

#[test]
fn the_controllers_bindings_win() {
    let mut s = Sim::new(2, 16);
    s.local(0, &[(VNI, mac(5))]);
    s.member_bindings(0, &[(mac(5), &[1])]);
    assert_eq!(s.owner_seen_by(1, 1), Some(mac(5)));
    // A cloud VM speaks up with the address: it is the cloud's.
    s.ctl_local(&[(VNI, mac(1))]);
    s.ctl_bindings(&[(mac(1), &[1])]);
    assert_eq!(s.owner(1), Some(mac(1)));
    assert_eq!(s.owner_seen_by(1, 1), Some(mac(1)));
    assert_eq!(s.owner_seen_by(0, 1), Some(mac(1)));
    assert!(s.rejected.is_empty());
}

#[test]
fn a_binding_moves_with_its_mac() {
    let mut s = Sim::new(3, 16);
    s.local(0, &[(VNI, mac(5))]);
    s.member_bindings(0, &[(mac(5), &[5])]);
    // Migrated from member 0 to member 1 with the operator's word.
    s.grant(VNI, mac(5), 1);
    s.local(1, &[(VNI, mac(5))]);
    assert_eq!(s.holder(mac(5)).map(|h| h.0), Some(vtep(1)));
    assert_eq!(s.owner(5), Some(mac(5)), "kept while the MAC moved");
    assert_eq!(s.owner_seen_by(2, 5), Some(mac(5)));
    // The old host lets go of the VM; its now empty report is ignored.
    s.local(0, &[]);
    s.member_bindings(0, &[]);
    assert_eq!(s.owner(5), Some(mac(5)));
    // The new host snoops the same address: accepted, nothing refused.
    s.member_bindings(1, &[(mac(5), &[5])]);
    assert_eq!(s.owner(5), Some(mac(5)));
    assert!(s.rejected.is_empty(), "{:?}", s.rejected);
}

#[test]
fn a_reconnecting_member_gets_every_binding_again() {
    let mut s = Sim::new(2, 16);
    s.local(0, &[(VNI, mac(5))]);
    s.member_bindings(0, &[(mac(5), &[5])]);
    assert_eq!(s.owner_seen_by(1, 5), Some(mac(5)));
    s.members[1].as_mut().unwrap().disconnected();
    s.connect(1);
    assert_eq!(
        s.owner_seen_by(1, 5),
        Some(mac(5)),
        "re-sent after the full sync"
    );
}

/// A zone VM's address (its MAC behind a static peer, its binding snooped
/// from the static peer's frames and reported as the controller's own): a
/// member that bound it first loses it, and no member can bind it while
/// the zone's VM holds its MAC; once that MAC ages out, it is free.
#[test]
fn a_member_cannot_bind_a_zone_vms_address() {
    let mut s = Sim::new(3, 16);
    s.local(0, &[(VNI, mac(5))]);
    s.member_bindings(0, &[(mac(5), &[1, 5])]);
    assert_eq!(
        s.owner(1),
        Some(mac(5)),
        "first come, while nobody else claims .1"
    );
    // The zone's VM announces .1.
    s.kernel.0.insert((VNI, mac(1)), STATIC_PEER);
    s.ctl_bindings(&[(mac(1), &[1])]);
    assert_eq!(s.owner(1), Some(mac(1)), "taken from the member");
    assert_eq!(s.owner(5), Some(mac(5)));
    for i in 0..3 {
        assert_eq!(s.owner_seen_by(i, 1), Some(mac(1)), "relayed to member {i}");
    }
    let last = |s: &Sim, m: MacAddr| {
        s.ctl_neigh
            .iter()
            .rev()
            .find(|(k, _)| k.1 == m)
            .map(|(_, set)| set.ips.clone())
    };
    assert_eq!(
        last(&s, mac(5)),
        Some([ip(5)].into()),
        "reprogrammed without .1"
    );
    assert_eq!(
        last(&s, mac(1)),
        None,
        "the zone's binding is in the kernel already"
    );
    assert!(s.rejected.is_empty());

    // Member 0 retries and member 1's VM claims .1: both refused.
    s.now += NEIGH_RETRY.as_secs();
    let now = s.now();
    let effects = s.members[0].as_mut().unwrap().tick(now);
    s.member_effects(0, effects);
    s.local(1, &[(VNI, mac(6))]);
    s.member_bindings(1, &[(mac(6), &[1, 6])]);
    assert_eq!(
        s.reasons(),
        [RejectReason::DuplicateIp, RejectReason::DuplicateIp]
    );
    assert_eq!((s.owner(1), s.owner(6)), (Some(mac(1)), Some(mac(6))));
    assert_eq!(s.owner_seen_by(2, 1), Some(mac(1)));

    // The zone's VM falls silent: its MAC ages out, its binding goes, and
    // member 0's next retry takes .1.
    s.kernel.0.clear();
    s.ctl_bindings(&[]);
    assert_eq!(s.owner(1), None);
    s.now += NEIGH_RETRY.as_secs();
    let now = s.now();
    let effects = s.members[0].as_mut().unwrap().tick(now);
    s.member_effects(0, effects);
    assert_eq!(s.owner(1), Some(mac(5)));
}
