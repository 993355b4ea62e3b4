//! The zone of issue 17: two FRR 8.4 nodes (Debian `frr`) configured as
//! Proxmox's EVPN zone writes them — one the route reflector, the other
//! its client, each with a kernel VXLAN device that does not learn on its
//! bridge — and one vlnet daemon peering with the reflector, a VM behind
//! each (VNI 100). Checks that every pair of VMs pings both ways and moves
//! an iperf3 stream; that both FRR nodes list vlnet's VM behind vlnet's
//! VTEP (`show evpn mac vni 100`) and vlnet lists both FRR VMs behind their
//! VTEPs (`ctl fdb --json`); and that tshark, capturing BGP on vlnet's
//! underlay while the session comes up, dissects vlnet's UPDATEs as EVPN:
//! a type-2 route with vlnet's VM's MAC, a type-3 route from vlnet's VTEP,
//! the MAC Mobility and VXLAN encapsulation extended communities, and
//! nothing malformed. FRR's daemons, the capture and the namespaces go
//! even when a check fails.
//! Needs root, `ip`, `bridge`, iperf3, tshark and
//! `/usr/lib/frr/{zebra,bgpd}` + `vtysh`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use support::frr::{self, reachable, vlnet_fdb, vlnet_fdb_has, wait_for, Role, Zone};
use support::node::vlnet_binary;
use support::pcap::{Pcap, PcapCapture};
use vlnet_lab::primitives::probe;
use vlnet_lab::{Daemon, Vm};

const ZONE: Zone = frr::VNI100;
const VLNET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const RR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const LEAF: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// The VTEPs, in the order of the VMs behind them.
const VTEPS: [Ipv4Addr; 3] = [VLNET, RR, LEAF];
const VM_IP: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 1),
    Ipv4Addr::new(192, 0, 2, 2),
    Ipv4Addr::new(192, 0, 2, 3),
];
const VM_MAC: [&str; 3] = [
    "02:00:00:00:f1:01",
    "02:00:00:00:f2:01",
    "02:00:00:00:f3:01",
];
/// What an iperf3 run of [`IPERF_SECS`] must move at least, bytes.
const IPERF_MIN_BYTES: f64 = 10e6;
const IPERF_SECS: u32 = 2;
const IPERF_PORT: u16 = 5201;

#[test]
fn two_frr_nodes_and_vlnet_form_one_evpn_zone() {
    let started = Instant::now();
    let underlay = vlnet_lab::Underlay::new("evp").unwrap();
    let rr = ZONE.frr_node(&underlay, "rr", RR, Role::Reflector(&[VLNET, LEAF]));
    let leaf = ZONE.frr_node(&underlay, "leaf", LEAF, Role::Client(&[RR]));
    let vl_host = ZONE.host(&underlay, "vl", VLNET);
    let capture = PcapCapture::start(vl_host.ns(), vl_host.underlay_if(), "tcp port 179");
    let daemon = Daemon::start(
        vl_host.ns(),
        ZONE.vlnet_spec("evp", VLNET, &[RR]),
        vlnet_binary(),
    )
    .expect("vlnet daemon");
    let vms = [
        ZONE.vm(&vl_host, "vm0", VM_MAC[0], VM_IP[0]),
        ZONE.vm(&rr.host, "vm1", VM_MAC[1], VM_IP[1]),
        ZONE.vm(&leaf.host, "vm2", VM_MAC[2], VM_IP[2]),
    ];
    let context = |what: &str| {
        format!(
            "{what}\n--- RR summary:\n{}\n--- RR MACs:\n{}\n--- leaf MACs:\n{}\n--- vlnet FDB: {}\n--- vlnet log:\n{}",
            rr.vtysh("show bgp l2vpn evpn summary"),
            rr.vtysh(&format!("show evpn mac vni {}", ZONE.vni)),
            leaf.vtysh(&format!("show evpn mac vni {}", ZONE.vni)),
            vlnet_fdb(&daemon),
            daemon.log_tail(40)
        )
    };
    assert!(
        wait_for(Duration::from_secs(30), || rr.established(VLNET)
            && rr.established(LEAF)),
        "{}",
        context("the sessions with the route reflector did not come up")
    );

    every_pair_pings(&vms, &context);
    every_pair_moves_a_stream(&vms, &context);

    for (name, node) in [("RR", &rr), ("leaf", &leaf)] {
        assert!(
            wait_for(Duration::from_secs(10), || node
                .holds_remote(ZONE.vni, VM_MAC[0], VLNET)),
            "{}",
            context(&format!("{name} does not list vlnet's VM behind {VLNET}"))
        );
    }
    for i in [1, 2] {
        assert!(
            wait_for(Duration::from_secs(10), || vlnet_fdb_has(
                &daemon, ZONE.vni, VM_MAC[i], VTEPS[i]
            )),
            "{}",
            context(&format!("vlnet does not list VM {i} behind {}", VTEPS[i]))
        );
    }

    tshark_dissects_vlnet_updates(&capture.stop());
    eprintln!("zone test took {:?}", started.elapsed());
}

/// Every VM pings every other: once until ARP is done, then 5 of 5.
fn every_pair_pings(vms: &[Vm; 3], context: &dyn Fn(&str) -> String) {
    for from in 0..vms.len() {
        for to in (0..vms.len()).filter(|&to| to != from) {
            assert!(
                reachable(&vms[from], VM_IP[to], Duration::from_secs(20)),
                "{}",
                context(&format!("VM {from} does not reach VM {to}"))
            );
            let ping =
                probe::ping(vms[from].ns(), VM_IP[to], 5, Duration::from_millis(50)).unwrap();
            assert_eq!(
                (ping.received, ping.errors),
                (ping.sent, 0),
                "{}",
                context(&format!("VM {from} → VM {to}: {ping:?}"))
            );
        }
    }
}

/// An iperf3 stream over every pair, each VM sending once and receiving
/// once (0 → 1, 1 → 2, 2 → 0).
fn every_pair_moves_a_stream(vms: &[Vm; 3], context: &dyn Fn(&str) -> String) {
    for (from, to) in [(0, 1), (1, 2), (2, 0)] {
        let _server = probe::iperf3_server(vms[to].ns(), VM_IP[to], IPERF_PORT).unwrap();
        let report = probe::iperf3_client(vms[from].ns(), VM_IP[to], IPERF_SECS, 1, IPERF_PORT)
            .unwrap_or_else(|e| panic!("{}", context(&format!("iperf3 {from} → {to}: {e}"))));
        let bytes = report.bits_per_second / 8.0 * f64::from(IPERF_SECS);
        assert!(
            bytes > IPERF_MIN_BYTES,
            "{}",
            context(&format!(
                "iperf3 {from} → {to} moved {bytes:.0} B, expected > {IPERF_MIN_BYTES:.0}: {report:?}"
            ))
        );
        eprintln!(
            "iperf3 VM {from} → VM {to}: {:.2} Gbit/s",
            report.bits_per_second / 1e9
        );
    }
}

/// tshark dissects vlnet's UPDATEs as BGP EVPN: a type-2 route for its
/// VM's MAC and a type-3 route from its VTEP (ingress replication), both
/// with the VXLAN encapsulation community. A first advertisement carries no
/// MAC Mobility community (RFC 7432 §15: none means sequence number 0, as
/// FRR sends it too); `tests/evpn_mobility.rs` dissects one after a move.
fn tshark_dissects_vlnet_updates(pcap: &Pcap) {
    let bad = "_ws.malformed || _ws.expert.severity == error";
    let malformed = pcap.fields(bad, &["frame.number"]);
    assert!(
        malformed.is_empty(),
        "tshark finds malformed packets: {malformed:?}\n{}",
        pcap.verbose(bad)
    );
    let ours = format!("ip.src == {VLNET} && bgp.type == 2 && bgp.evpn.nlri");
    let fields = [
        "bgp.evpn.nlri.rt",
        "bgp.evpn.nlri.mac_addr",
        "bgp.evpn.nlri.ip.addr",
        "bgp.ext_com_evpn.mmac.seq",
        "bgp.ext_com.tunnel_type",
        "bgp.update.path_attribute.pmsi.tunnel.type",
        "bgp.update.path_attribute.pmsi.ingress_rep_ip",
    ];
    let rows = pcap.fields(&ours, &fields);
    let dump = || format!("{rows:?}\n{}", pcap.verbose(&ours));
    let has = |row: &[String], field: &str, value: &str| {
        let i = fields.iter().position(|f| *f == field).unwrap();
        row.get(i).is_some_and(|v| v.split(',').any(|x| x == value))
    };
    let seq = |row: &[String]| row[3].clone();
    assert!(
        rows.iter().any(|r| has(r, "bgp.evpn.nlri.rt", "2")
            && has(r, "bgp.evpn.nlri.mac_addr", VM_MAC[0])
            && (seq(r).is_empty() || seq(r) == "0")
            && has(r, "bgp.ext_com.tunnel_type", "8")),
        "no type-2 UPDATE from vlnet for {} with sequence number 0 and VXLAN encapsulation: {}",
        VM_MAC[0],
        dump()
    );
    assert!(
        rows.iter().any(|r| has(r, "bgp.evpn.nlri.rt", "3")
            && has(r, "bgp.evpn.nlri.ip.addr", &VLNET.to_string())
            && has(r, "bgp.ext_com.tunnel_type", "8")
            && has(r, "bgp.update.path_attribute.pmsi.tunnel.type", "6")
            && has(
                r,
                "bgp.update.path_attribute.pmsi.ingress_rep_ip",
                &VLNET.to_string()
            )),
        "no type-3 UPDATE from vlnet's VTEP {VLNET} with ingress replication: {}",
        dump()
    );
    let text = pcap.verbose(&ours);
    for name in [
        "EVPN NLRI: MAC Advertisement Route",
        "EVPN NLRI: Inclusive Multicast Route",
        "Encapsulation: VXLAN Encapsulation",
        "Tunnel Type: Ingress Replication",
    ] {
        assert!(
            text.contains(name),
            "tshark does not show {name:?}:\n{text}"
        );
    }
}
