//! A VM moves between an FRR 8.4 leaf (Debian `frr`, kernel VXLAN without
//! learning, as Proxmox's EVPN zone writes it) and a vlnet node, both
//! clients of an FRR route reflector, VNI 100, a witness VM behind the
//! reflector.
//! - Leaf → vlnet in a live migration's order: the source copy pauses (its
//!   port stays on the leaf's bridge, it sends nothing), a copy with the
//!   same MAC and address starts on vlnet's bridge and announces itself
//!   with a gratuitous ARP (`arping -U`), then the source goes. The
//!   reflector must hold the MAC behind vlnet's VTEP with a higher MAC
//!   Mobility sequence number than before, the leaf give its local MAC up,
//!   tshark (capturing BGP on vlnet's underlay) see vlnet's UPDATE carry
//!   that number in the MAC Mobility community, and the witness reach the
//!   VM.
//! - vlnet → leaf the same way: vlnet's `ctl fdb` holds the MAC behind the
//!   leaf and nothing else, also after the copy on vlnet goes, the
//!   reflector's number rises again, and the witness reaches the VM.
//! - Leaf → vlnet by a plain link move (the old port goes first): the MAC
//!   ends behind vlnet, vlnet keeps no entry behind the leaf, and the
//!   witness reaches it.
//!
//! FRR's daemons, the capture and the namespaces go even when a check
//! fails.
//! Needs root, `ip`, `bridge`, `arping` (iputils), tshark and
//! `/usr/lib/frr/{zebra,bgpd}` + `vtysh`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use support::frr::{
    self, holds_for, reachable, vlnet_fdb, vlnet_fdb_has, wait_for, FrrNode, Role, Zone,
};
use support::node::vlnet_binary;
use support::pcap::{Pcap, PcapCapture};
use vlnet_lab::primitives::probe;
use vlnet_lab::{Daemon, Host, Underlay, Vm};

const ZONE: Zone = frr::VNI100;
const VLNET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const RR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const LEAF: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const MOVER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const MOVER_MAC: &str = "02:00:00:00:c1:01";
const WITNESS_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const WITNESS_MAC: &str = "02:00:00:00:c2:01";

struct Bed {
    rr: FrrNode,
    leaf: FrrNode,
    daemon: Daemon,
    vl_host: Host,
    _underlay: Underlay,
}

impl Bed {
    fn context(&self, what: &str) -> String {
        format!(
            "{what}\n--- RR's MAC:\n{:?}\n--- leaf's MAC:\n{:?}\n--- vlnet FDB: {}\n--- vlnet log:\n{}",
            self.rr.evpn_mac(ZONE.vni, MOVER_MAC),
            self.leaf.evpn_mac(ZONE.vni, MOVER_MAC),
            vlnet_fdb(&self.daemon),
            self.daemon.log_tail(40)
        )
    }

    /// The MAC Mobility sequence number of the mover's route as the
    /// reflector holds it, if the MAC is remote behind `vtep` there.
    fn rr_seq_behind(&self, vtep: Ipv4Addr) -> Option<u64> {
        self.rr.remote_seq(ZONE.vni, MOVER_MAC, vtep)
    }
}

#[test]
fn a_vm_moves_from_frr_to_vlnet_and_back() {
    let started = Instant::now();
    let underlay = Underlay::new("evm").unwrap();
    let rr = ZONE.frr_node(&underlay, "rr", RR, Role::Reflector(&[VLNET, LEAF]));
    let leaf = ZONE.frr_node(&underlay, "leaf", LEAF, Role::Client(&[RR]));
    let vl_host = ZONE.host(&underlay, "vl", VLNET);
    let daemon = Daemon::start(
        vl_host.ns(),
        ZONE.vlnet_spec("evm", VLNET, &[RR]),
        vlnet_binary(),
    )
    .expect("vlnet daemon");
    let bed = Bed {
        rr,
        leaf,
        daemon,
        vl_host,
        _underlay: underlay,
    };
    let mover = ZONE.vm(&bed.leaf.host, "mover", MOVER_MAC, MOVER_IP);
    let witness = ZONE.vm(&bed.rr.host, "witness", WITNESS_MAC, WITNESS_IP);
    assert!(
        wait_for(Duration::from_secs(30), || bed.rr.established(VLNET)
            && bed.rr.established(LEAF)),
        "{}",
        bed.context("the sessions with the reflector did not come up")
    );
    assert!(
        reachable(&witness, MOVER_IP, Duration::from_secs(20)),
        "{}",
        bed.context("the witness does not reach the mover on the leaf")
    );
    let mut seq = None;
    assert!(
        wait_for(Duration::from_secs(10), || {
            seq = bed.rr_seq_behind(LEAF);
            seq.is_some() && vlnet_fdb_has(&bed.daemon, ZONE.vni, MOVER_MAC, LEAF)
        }),
        "{}",
        bed.context("the mover is not known behind the leaf")
    );
    let before = seq.unwrap();

    // FRR leaf → vlnet, in a live migration's order.
    let capture = PcapCapture::start(bed.vl_host.ns(), bed.vl_host.underlay_if(), "tcp port 179");
    pause(&mover);
    let on_vlnet_copy = ZONE.vm(&bed.vl_host, "mover-vl", MOVER_MAC, MOVER_IP);
    announce(&on_vlnet_copy);
    assert!(
        wait_for(Duration::from_secs(10), || {
            seq = bed.rr_seq_behind(VLNET);
            seq.is_some_and(|s| s > before)
        }),
        "{}",
        bed.context(&format!(
            "the reflector does not hold the mover behind vlnet with a sequence number above {before}"
        ))
    );
    let on_vlnet = seq.unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || bed
            .leaf
            .holds_remote(ZONE.vni, MOVER_MAC, VLNET)),
        "{}",
        bed.context("the leaf did not give its local MAC up to vlnet's higher sequence number")
    );
    mobility_community_dissected(&capture.stop(), on_vlnet);
    drop(mover);
    witness_reaches_mover(&bed, &witness, "on vlnet");

    // vlnet → FRR leaf, in the same order; when the copy on vlnet goes,
    // vlnet must not drop the leaf's route with its own.
    pause(&on_vlnet_copy);
    let on_leaf_copy = ZONE.vm(&bed.leaf.host, "mover-lf", MOVER_MAC, MOVER_IP);
    announce(&on_leaf_copy);
    assert!(
        wait_for(Duration::from_secs(10), || bed
            .rr_seq_behind(LEAF)
            .is_some_and(|s| s > on_vlnet)),
        "{}",
        bed.context(&format!(
            "the reflector does not hold the mover behind the leaf with a sequence number above {on_vlnet}"
        ))
    );
    assert!(
        wait_for(Duration::from_secs(10), || only_behind_leaf(&bed)),
        "{}",
        bed.context("vlnet does not hold the mover behind the leaf alone")
    );
    drop(on_vlnet_copy);
    assert!(
        holds_for(Duration::from_secs(2), || only_behind_leaf(&bed)),
        "{}",
        bed.context("the copy on vlnet went and took the leaf's route with it")
    );
    witness_reaches_mover(&bed, &witness, "back on the leaf");

    link_move_to_vlnet(&bed, &witness, on_leaf_copy);
    eprintln!("mobility test took {:?}", started.elapsed());
}

/// A plain link move: the port on the leaf goes first, then the VM's
/// link joins vlnet's bridge and announces. The leaf's withdrawal and
/// vlnet's announce race, so the sequence number is not checked (after a
/// withdrawal the MAC is new to everyone: RFC 7432 §15 starts it at 0
/// again); the MAC must end behind vlnet, vlnet must keep no entry behind
/// the leaf, and traffic must follow.
fn link_move_to_vlnet(bed: &Bed, witness: &Vm, mut mover: Vm) {
    mover.move_to(&bed.vl_host, ZONE.bridge).unwrap();
    announce(&mover);
    assert!(
        wait_for(Duration::from_secs(10), || bed
            .rr_seq_behind(VLNET)
            .is_some()),
        "{}",
        bed.context("after a link move the reflector does not hold the mover behind vlnet")
    );
    assert!(
        wait_for(Duration::from_secs(5), || !vlnet_fdb_has(
            &bed.daemon,
            ZONE.vni,
            MOVER_MAC,
            LEAF
        )),
        "{}",
        bed.context("vlnet keeps a stale entry behind the leaf for its own VM")
    );
    witness_reaches_mover(bed, witness, "moved by its link to vlnet");
}

/// Whether vlnet's FDB holds the mover behind the leaf and nowhere else.
fn only_behind_leaf(bed: &Bed) -> bool {
    let fdb = vlnet_fdb(&bed.daemon);
    let entries = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["mac"] == MOVER_MAC)
        .count();
    entries == 1 && vlnet_fdb_has(&bed.daemon, ZONE.vni, MOVER_MAC, LEAF)
}

/// tshark sees vlnet's UPDATE for the mover carry sequence number `seq`
/// in what it names the MAC Mobility community.
fn mobility_community_dissected(pcap: &Pcap, seq: u64) {
    let ours = format!("ip.src == {VLNET} && bgp.evpn.nlri.mac_addr == {MOVER_MAC}");
    let rows = pcap.fields(&ours, &["bgp.ext_com_evpn.mmac.seq"]);
    assert!(
        rows.iter().any(|r| r[0] == seq.to_string()),
        "tshark sees no UPDATE from vlnet with MAC Mobility sequence number {seq}: {rows:?}\n\
         every BGP message: {:?}\ntshark: {}",
        pcap.fields(
            "bgp",
            &[
                "frame.number",
                "ip.src",
                "bgp.type",
                "bgp.evpn.nlri.rt",
                "bgp.evpn.nlri.mac_addr",
                "bgp.ext_com_evpn.mmac.seq"
            ]
        ),
        pcap.log()
    );
    let text = pcap.verbose(&ours);
    assert!(
        text.contains("MAC Mobility") && text.contains(&format!("Sequence number: {seq}")),
        "tshark does not name the MAC Mobility community with sequence number {seq}:\n{text}"
    );
}

/// The source's copy of a migrating VM stops (as QEMU pauses it): its
/// port stays on the bridge, but it sends nothing more: no ARP reply, not
/// even to the destination copy's gratuitous ARP for their shared address,
/// and no IPv6 neighbour advertisement to the copy's duplicate address
/// detection (a live copy would answer both from the shared MAC and pull
/// it back).
fn pause(vm: &Vm) {
    vm.ns()
        .run(&["ip", "link", "set", vm.ifname(), "arp", "off"])
        .unwrap();
    vm.ns()
        .sysctl(&format!("net.ipv6.conf.{}.disable_ipv6", vm.ifname()), "1")
        .unwrap();
}

/// The moved VM's gratuitous ARP (`arping -U`), as a hypervisor's announce:
/// its new bridge learns the MAC. arping's status is not checked (no reply
/// comes to an unsolicited ARP).
fn announce(vm: &Vm) {
    let ip = vm.ip().to_string();
    vm.ns()
        .output_within(
            &[
                "arping",
                "-U",
                "-c",
                "2",
                "-i",
                "0.2",
                "-I",
                vm.ifname(),
                &ip,
            ],
            Duration::from_secs(5),
        )
        .unwrap();
}

/// The witness reaches the mover (first reply within 5 s: its ARP cache
/// still holds the MAC, so this measures the path), then 5 of 5.
fn witness_reaches_mover(bed: &Bed, witness: &Vm, place: &str) {
    assert!(
        reachable(witness, MOVER_IP, Duration::from_secs(5)),
        "{}",
        bed.context(&format!("the witness does not reach the mover {place}"))
    );
    let ping = probe::ping(witness.ns(), MOVER_IP, 5, Duration::from_millis(50)).unwrap();
    assert_eq!(
        ping.received,
        ping.sent,
        "{}",
        bed.context(&format!("witness → mover {place}: {ping:?}"))
    );
}
