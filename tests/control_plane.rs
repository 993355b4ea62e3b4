//! The WireGuard control plane end to end: join by token, MAC distribution,
//! secure VXLAN, refusals, removal, restarts and a WAN cut. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

use std::path::Path;
use std::time::Duration;

use vlnet::lab::cluster::{Cluster, Place};
use vlnet::lab::probe;
use vlnet::lab::scenario::vm_ip;

fn vlnet_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vlnet"))
}

#[test]
fn join_by_token_and_ping() {
    let c = Cluster::build("cpj", &[Place::PublicClient], vlnet_binary()).unwrap();
    c.wait_connected().unwrap();
    let r = probe::ping(c.nodes[1].vm.ns(), vm_ip(0), 5, Duration::from_millis(200)).unwrap();
    eprintln!("{r:?}");
    eprintln!("{}", c.nodes[0].daemon.ctl(&["fdb"]).unwrap());
    eprintln!("{}", c.nodes[1].daemon.ctl(&["fdb"]).unwrap());
    eprintln!("{}", c.nodes[0].daemon.ctl(&["client", "list"]).unwrap());
    assert_eq!(r.received, 5);
}
