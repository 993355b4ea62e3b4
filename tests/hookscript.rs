//! The Proxmox hookscript in `deploy/`: once a VM has started on the node it
//! calls `vlnet ctl vm moved MAC --bridge BR` once per network interface,
//! except on the target of a live migration (QEMU announces after the
//! switchover), and does nothing in other phases. `qm` and `vlnet` are
//! stand-ins (no Proxmox here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::ffi::OsStr;
use std::path::Path;

use support::proxmox::{FakeProxmox, ANNOUNCES};

const HOOK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/proxmox-hookscript.sh"
);

#[test]
fn after_a_start_every_interface_is_announced() {
    let pve = FakeProxmox::new();
    let calls = pve.run_hook(
        Path::new(HOOK),
        "post-start",
        &[("VLNET", pve.vlnet().as_os_str())],
    );
    assert_eq!(calls, ANNOUNCES);
}

#[test]
fn an_incoming_live_migration_is_left_to_qemu() {
    let pve = FakeProxmox::new();
    let vlnet = pve.vlnet();
    let env = [
        ("VLNET", vlnet.as_os_str()),
        ("PVE_MIGRATED_FROM", OsStr::new("pve1")),
    ];
    assert_eq!(pve.run_hook(Path::new(HOOK), "post-start", &env), "");
}

#[test]
fn other_phases_do_nothing() {
    let pve = FakeProxmox::new();
    for phase in ["pre-start", "pre-stop", "post-stop"] {
        let calls = pve.run_hook(
            Path::new(HOOK),
            phase,
            &[("VLNET", pve.vlnet().as_os_str())],
        );
        assert_eq!(calls, "", "{phase}");
    }
}

#[test]
fn the_binary_is_found_without_path() {
    // Proxmox runs hooks with `support::proxmox::PVE_PATH`, which lacks
    // /usr/local/bin; deploy/install.sh rewrites this line to its prefix.
    let hook = std::fs::read_to_string(HOOK).unwrap();
    assert!(
        hook.lines()
            .any(|l| l == "vlnet=${VLNET:-/usr/local/bin/vlnet}"),
        "the hook's default vlnet is not /usr/local/bin/vlnet"
    );
}
