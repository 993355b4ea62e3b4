//! An EVPN VNI on the real maps. A VTEP known only from type-2 routes (its
//! type-3 route not there yet, or never sent): a convergence keeps the
//! control entries placed behind it, accepts its VXLAN and does not flood to
//! it; once no route places a MAC behind it, the next convergence removes
//! its entries and its peer slot. A control-only VNI learns nothing from
//! frames, even from a VTEP that is a static peer (of another VNI) and may
//! move MACs there.

use std::net::Ipv4Addr;

use super::support::frames::{self, VM_A_MAC, VM_B_MAC};
use super::support::vtep_bed::{verdicts, Bed, Mode, LOCAL};
use vlnet_dataplane::maps::fdb_key;
use vlnet_dataplane::sync;
use vlnet_dataplane::trust::VtepBinding;
use vlnet_ebpf::abi::{vlnet_fdb_entry, VLNET_FDB_CONTROL};

const LOCATED: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 9);
const MAC: [u8; 6] = [2, 0, 0, 0, 0x0d, 1];

#[test]
fn a_vtep_with_only_mac_routes_keeps_its_entries_and_gets_no_floods() {
    let mut bed = Bed::new("located");
    let mut desired = bed.desired.clone();
    desired.vnis[0].located = vec![LOCATED];
    desired.vteps.insert(LOCATED, VtepBinding::EVPN);
    sync::apply(&mut bed.maps, &desired).unwrap();
    let entry = vlnet_fdb_entry {
        vtep_be: u32::from(LOCATED).to_be(),
        flags: VLNET_FDB_CONTROL,
        updated_ns: 1,
    };
    bed.maps.set_fdb(&fdb_key(100, MAC), &entry).unwrap();

    sync::apply(&mut bed.maps, &desired).unwrap();
    assert_eq!(
        bed.fdb_entry(100, MAC).map(|e| e.vtep_be),
        Some(entry.vtep_be),
        "a convergence must keep a MAC behind a located VTEP"
    );
    assert!(
        bed.maps
            .peers()
            .iter()
            .any(|p| p.vni == 100 && p.vtep == LOCATED),
        "a located VTEP is a peer of its VNI"
    );
    assert!(
        !bed.maps.flood_slots().iter().any(|s| s.2 == LOCATED),
        "a located VTEP gets no floods"
    );
    let (_, _, redirect) = verdicts(Mode::Tc);
    let frame = frames::vxlan(LOCATED, LOCAL, 100, 0, &frames::inner_udp(VM_B_MAC, 0, 10));
    let (ret, _) = bed.decap(Mode::Tc, &frame);
    assert_eq!(ret, redirect, "its VXLAN is accepted");

    desired.vnis[0].located.clear();
    desired.vteps.remove(&LOCATED);
    sync::apply(&mut bed.maps, &desired).unwrap();
    assert_eq!(
        bed.fdb_entry(100, MAC),
        None,
        "no longer known: its MACs go"
    );
    assert!(!bed.maps.peers().iter().any(|p| p.vtep == LOCATED));
}

#[test]
fn a_control_only_vni_learns_nothing_from_a_static_peers_frames() {
    let mut bed = Bed::new("ctlonly");
    let mut desired = bed.desired.clone();
    let (_, _, redirect) = verdicts(Mode::Tc);
    // From VM A's MAC, which nothing places anywhere yet.
    let frame = frames::vxlan(
        super::PEER2,
        LOCAL,
        100,
        0,
        &frames::inner_udp(VM_B_MAC, 0, 10),
    );
    desired.vnis[0].peers.push(super::PEER2);
    desired
        .vteps
        .insert(super::PEER2, super::support::vtep_bed::STATIC_PEER);
    desired.vnis[0].control_only = true;
    sync::apply(&mut bed.maps, &desired).unwrap();
    let (ret, _) = bed.decap(Mode::Tc, &frame);
    assert_eq!(ret, redirect, "delivered");
    assert_eq!(bed.fdb_entry(100, VM_A_MAC), None, "and nothing learned");

    desired.vnis[0].control_only = false;
    sync::apply(&mut bed.maps, &desired).unwrap();
    bed.decap(Mode::Tc, &frame);
    assert!(
        bed.fdb_entry(100, VM_A_MAC).is_some(),
        "the same frame on a learning VNI is learned"
    );
}
