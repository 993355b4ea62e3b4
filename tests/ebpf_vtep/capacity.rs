//! Each VNI's FDB capacity on the real maps: the capacity task's tick
//! evicts the oldest learned entries of a VNI above capacity and pauses its
//! learning (which the decap programs then honour); a control-plane entry
//! for a new MAC in a full VNI takes the place of the oldest learned entry,
//! or is refused when there is none.

use std::collections::BTreeMap;

use super::support::frames::{self, VM_A_MAC, VM_B_MAC};
use super::support::vtep_bed::{verdicts, Bed, Mode, LOCAL, PEER};
use super::PEER2;
use vlnet_dataplane::capacity::{Capacities, Watch};
use vlnet_dataplane::control::macbook::FdbChange;
use vlnet_dataplane::mac::MacAddr;
use vlnet_dataplane::maps::{fdb_key, ControlFdb};
use vlnet_dataplane::sync;
use vlnet_ebpf::abi::{
    vlnet_fdb_entry, VLNET_FDB_CONTROL, VLNET_FDB_LEARNED, VLNET_FDB_STATIC, VLNET_VNI_LEARN_PAUSED,
};

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0x0c, n]
}

/// Puts `mac(n)` in VNI 100 with `flags`, confirmed at `n` ns.
fn put(bed: &mut Bed, n: u8, flags: u32) {
    let entry = vlnet_fdb_entry {
        vtep_be: u32::from(PEER).to_be(),
        flags,
        updated_ns: u64::from(n),
    };
    bed.maps.set_fdb(&fdb_key(100, mac(n)), &entry).unwrap();
}

fn paused(bed: &Bed) -> bool {
    bed.maps.vni(100).unwrap().flags & VLNET_VNI_LEARN_PAUSED != 0
}

fn install(n: u8) -> FdbChange {
    FdbChange::Install {
        vni: 100,
        mac: MacAddr(mac(n)),
        vtep: PEER2,
    }
}

#[test]
fn the_tick_evicts_the_oldest_learned_and_pauses_a_full_vni() {
    let mut bed = Bed::new("cap");
    let (_, _, redirect) = verdicts(Mode::Tc);
    bed.maps
        .set_fdb_capacities(Capacities::new(4096, BTreeMap::from([(100, 4), (300, 10)])));
    put(&mut bed, 1, VLNET_FDB_STATIC);
    for n in 2..=6 {
        put(&mut bed, n, VLNET_FDB_LEARNED);
    }
    let mut watch = Watch::default();
    let plan = bed.maps.enforce_fdb_capacity(&mut watch).unwrap();
    assert_eq!(plan.evict.len(), 2, "6 entries, capacity 4: {plan:?}");
    for (n, kept) in [(1, true), (2, false), (3, false), (4, true), (6, true)] {
        assert_eq!(bed.fdb_entry(100, mac(n)).is_some(), kept, "mac {n}");
    }
    assert!(paused(&bed), "at capacity: learning paused in the kernel");
    assert!(!plan.nearly_full.is_empty(), "100 % is reported");

    // The programs honour the pause: a frame from a new MAC is delivered
    // and not learned.
    let frame = frames::vxlan(PEER, LOCAL, 100, 0, &frames::inner_udp(VM_B_MAC, 0, 10));
    let (ret, _) = bed.decap(Mode::Tc, &frame);
    assert_eq!(ret, redirect);
    assert_eq!(bed.fdb_entry(100, VM_A_MAC), None);

    // Room again: the next tick resumes learning.
    bed.maps.remove_fdb(&fdb_key(100, mac(6))).unwrap();
    bed.maps.enforce_fdb_capacity(&mut watch).unwrap();
    assert!(!paused(&bed));
    bed.decap(Mode::Tc, &frame);
    assert!(
        bed.fdb_entry(100, VM_A_MAC).is_some(),
        "learned once resumed"
    );
    bed.maps.enforce_fdb_capacity(&mut watch).unwrap();
    assert!(paused(&bed), "full again");
    // A convergence rewrites the VNI's settings but keeps the tick's flag.
    let desired = bed.desired.clone();
    sync::apply(&mut bed.maps, &desired).unwrap();
    assert!(paused(&bed), "kept across a convergence");
}

#[test]
fn a_control_entry_in_a_full_vni_evicts_a_learned_one_or_is_refused() {
    let mut bed = Bed::new("capctl");
    bed.maps
        .set_fdb_capacities(Capacities::new(4096, BTreeMap::from([(100, 3)])));
    put(&mut bed, 1, VLNET_FDB_CONTROL);
    put(&mut bed, 2, VLNET_FDB_LEARNED);
    put(&mut bed, 3, VLNET_FDB_LEARNED);
    bed.maps
        .enforce_fdb_capacity(&mut Watch::default())
        .unwrap();

    // Full: the oldest learned entry (mac 2) gives way.
    assert_eq!(
        bed.maps.apply_control_fdb(&install(4)).unwrap(),
        ControlFdb::Applied
    );
    assert_eq!(
        bed.fdb_entry(100, mac(2)),
        None,
        "the oldest learned one went"
    );
    assert!(bed.fdb_entry(100, mac(3)).is_some());
    let new = bed.fdb_entry(100, mac(4)).unwrap();
    assert_eq!(
        (new.vtep_be, new.flags),
        (u32::from(PEER2).to_be(), VLNET_FDB_CONTROL)
    );
    // Then mac 3; then nothing learned is left: refused, nothing written.
    assert_eq!(
        bed.maps.apply_control_fdb(&install(5)).unwrap(),
        ControlFdb::Applied
    );
    assert_eq!(bed.fdb_entry(100, mac(3)), None);
    assert_eq!(
        bed.maps.apply_control_fdb(&install(6)).unwrap(),
        ControlFdb::Refused {
            vni: 100,
            warn: true
        }
    );
    assert_eq!(bed.fdb_entry(100, mac(6)), None);
    assert_eq!(
        bed.maps.apply_control_fdb(&install(7)).unwrap(),
        ControlFdb::Refused {
            vni: 100,
            warn: false
        },
        "warned once a minute"
    );
    assert_eq!(bed.maps.fdb_refused(), [(100, 2)]);
    // An entry that exists is updated whatever the fill; another VNI has room.
    assert_eq!(
        bed.maps.apply_control_fdb(&install(4)).unwrap(),
        ControlFdb::Applied
    );
    let other = FdbChange::Install {
        vni: 300,
        mac: MacAddr(mac(9)),
        vtep: PEER2,
    };
    assert_eq!(
        bed.maps.apply_control_fdb(&other).unwrap(),
        ControlFdb::Applied
    );
    assert_eq!(
        bed.maps.fdb().iter().filter(|(k, _)| k.vni == 100).count(),
        3
    );
}
