//! A vlnet daemon with `[evpn]` in an EVPN zone with one FRR 8.4 node
//! (Debian `frr`: zebra + bgpd with `advertise-all-vni`, the route
//! reflector, a kernel VXLAN device without learning for VNI 100 on its
//! bridge), a VM behind each bridge. Checks that the VMs ping each other
//! both ways; that FRR lists the vlnet VM's MAC behind vlnet's VTEP
//! (`show evpn mac vni 100`), learned from vlnet's type-2 route; and that
//! `vlnet ctl fdb` lists the FRR VM's MAC behind FRR's VTEP, from FRR's
//! type-2 route; `vlnet ctl evpn` shows the session established with the
//! routes received and FRR's VTEP in VNI 100's flood list, and `/metrics`
//! the session up. Then the daemon stops, the FRR VM goes (FRR withdraws
//! its MAC) and the daemon starts again: the FDB, pinned across the
//! restart, must not keep the withdrawn MAC once FRR's End-of-RIB ended the
//! graceful restart. FRR's daemons are stopped and the namespaces removed
//! even when a check fails.
//! Needs root, `ip`, `bridge`, and `/usr/lib/frr/{zebra,bgpd}` + `vtysh`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use support::frr::{vlnet_fdb, vlnet_fdb_has, wait_for, Frr, Role, Zone};
use support::node::vlnet_binary;
use vlnet_lab::primitives::probe;
use vlnet_lab::{Daemon, Host, Underlay, Vm};

const ZONE: Zone = Zone {
    asn: ASN,
    vni: VNI,
    bridge: BRIDGE,
};

const ASN: u32 = 65000;
const VNI: u32 = 100;
const BRIDGE: &str = "vnet100";
const VLNET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const FRR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VM_IP: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)];
const VM_MAC: [&str; 2] = ["02:00:00:00:e1:01", "02:00:00:00:e2:01"];

fn vm(host: &Host, i: usize) -> Vm {
    ZONE.vm(host, &format!("vm{i}"), VM_MAC[i], VM_IP[i])
}

#[test]
fn a_vlnet_node_joins_an_frr_evpn_zone() {
    let underlay = Underlay::new("evz").unwrap();
    let frr = ZONE.frr_node(&underlay, "frr", FRR, Role::Reflector(&[VLNET]));
    let frr_host = &frr.host;
    let vlnet_host = ZONE.host(&underlay, "vl", VLNET);
    let spec = ZONE.vlnet_spec("evz", VLNET, &[FRR]);
    let mut daemon = Daemon::start(vlnet_host.ns(), spec, vlnet_binary()).expect("vlnet daemon");
    let vms = [vm(&vlnet_host, 0), vm(frr_host, 1)];
    let context = |what: &str| {
        format!(
            "{what}\n--- FRR summary:\n{}\n--- FRR log:\n{}\n--- vlnet log:\n{}",
            frr.vtysh("show bgp l2vpn evpn summary"),
            frr.log(),
            daemon.log_tail(60)
        )
    };
    assert!(
        wait_for(Duration::from_mins(1), || frr.established(VLNET)),
        "{}",
        context("the session did not come up")
    );
    // The first pings make both VMs' MACs known (ARP is flooded through
    // the type-3 flood lists); then every ping must come back.
    assert!(
        wait_for(Duration::from_secs(30), || {
            probe::ping(vms[0].ns(), VM_IP[1], 1, Duration::from_millis(200))
                .is_ok_and(|p| p.received == 1)
        }),
        "{}",
        context("no ping through the zone")
    );
    for (from, to) in [(0, 1), (1, 0)] {
        let ping = probe::ping(vms[from].ns(), VM_IP[to], 5, Duration::from_millis(100)).unwrap();
        assert_eq!(
            ping.received,
            ping.sent,
            "{}",
            context(&format!("ping {} from VM {from}: {ping:?}", VM_IP[to]))
        );
    }

    let ours = VM_MAC[0];
    assert!(
        wait_for(Duration::from_secs(10), || {
            let macs = frr.vtysh(&format!("show evpn mac vni {VNI}"));
            macs.lines()
                .any(|l| l.contains(ours) && l.contains("remote") && l.contains(&VLNET.to_string()))
        }),
        "{}",
        context(&format!(
            "FRR does not list the vlnet VM behind {VLNET}:\n{}",
            frr.vtysh(&format!("show evpn mac vni {VNI}"))
        ))
    );
    let theirs = VM_MAC[1];
    assert!(
        wait_for(Duration::from_secs(10), || {
            vlnet_fdb_has(&daemon, VNI, theirs, FRR)
        }),
        "{}",
        context(&format!(
            "vlnet does not list the FRR VM behind {FRR}: {}",
            vlnet_fdb(&daemon)
        ))
    );

    ctl_evpn_and_metrics(&daemon, &vlnet_host);
    let [_vm0, vm1] = vms;
    restart_forgets_withdrawn(&mut daemon, &frr, vm1);
}

/// `vlnet ctl evpn` and `/metrics` show the session and the VNI (the VNI
/// views are rebuilt within a second of a change).
fn ctl_evpn_and_metrics(daemon: &Daemon, vlnet_host: &Host) {
    let read = || -> serde_json::Value {
        serde_json::from_str(&daemon.ctl(&["evpn", "--json"]).unwrap()).unwrap()
    };
    wait_for(Duration::from_secs(5), || {
        let r = read();
        r["vnis"][0]["local_macs"] == 1
            && r["vnis"][0]["vteps"] == serde_json::json!([FRR.to_string()])
    });
    let report = read();
    let session = &report["neighbors"][0];
    assert_eq!(session["neighbor"], format!("{FRR}:179"), "{report}");
    assert_eq!(session["state"], "established", "{report}");
    assert!(session["mac_routes"].as_u64() >= Some(1), "{report}");
    assert!(session["imet_routes"].as_u64() >= Some(1), "{report}");
    assert_eq!(report["vnis"][0]["vni"], VNI, "{report}");
    assert_eq!(report["vnis"][0]["local_macs"], 1, "{report}");
    assert_eq!(
        report["vnis"][0]["vteps"],
        serde_json::json!([FRR.to_string()]),
        "{report}"
    );
    let metrics = support::node::scrape(vlnet_host.ns(), daemon.spec().metrics_port);
    let up = format!("vlnet_evpn_session_up{{neighbor=\"{FRR}:179\"}} 1");
    assert!(metrics.lines().any(|l| l == up), "no {up} in\n{metrics}");
}

/// A restart: the previous daemon's entries stay until FRR's End-of-RIB
/// (graceful restart); then those of MACs withdrawn meanwhile must go.
fn restart_forgets_withdrawn(daemon: &mut Daemon, frr: &Frr, vm1: Vm) {
    let theirs = VM_MAC[1];
    daemon.terminate(Duration::from_secs(10)).unwrap();
    drop(vm1);
    assert!(
        wait_for(Duration::from_secs(30), || !frr
            .vtysh(&format!("show evpn mac vni {VNI}"))
            .contains(theirs)),
        "FRR did not withdraw its VM's MAC"
    );
    daemon.restart().unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || {
            daemon
                .ctl(&["evpn", "--json"])
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|r| r["vnis"][0]["vteps"] == serde_json::json!([FRR.to_string()]))
        }),
        "the restarted daemon did not get FRR's routes again: {}",
        daemon.log_tail(30)
    );
    assert!(
        wait_for(Duration::from_secs(30), || !vlnet_fdb(daemon)
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["mac"] == theirs)),
        "the withdrawn MAC stayed in the FDB across the restart: {}\n{}",
        vlnet_fdb(daemon),
        daemon.log_tail(30)
    );
    assert!(
        daemon.log().contains("EVPN graceful restart over"),
        "swept by something else than the end of the restart: {}",
        daemon.log_tail(30)
    );
}
