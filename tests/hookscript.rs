//! The Proxmox hookscript in `deploy/`: once a VM or a container has started
//! on the node it calls `vlnet ctl vm moved MAC --bridge BR` once per network
//! interface, except on the target of a VM's live migration (QEMU announces
//! after the switchover), skips an id that is neither with a message, and
//! does nothing in other phases; the chaining script PROXMOX.md shows runs a
//! guest's own hookscript and vlnet's. `qm`, `pct` and `vlnet` are stand-ins
//! (no Proxmox here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::ffi::OsStr;
use std::path::Path;

use support::proxmox::{script, FakeProxmox, ANNOUNCES, CT_ANNOUNCES};

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
fn a_container_is_announced_after_every_start() {
    let pve = FakeProxmox::new();
    let vlnet = pve.vlnet();
    for migrated in [None, Some("pve1")] {
        let mut env = vec![("VLNET", vlnet.as_os_str())];
        if let Some(from) = migrated {
            // A container migrates by restarting: it runs only here now.
            env.push(("PVE_MIGRATED_FROM", OsStr::new(from)));
        }
        let out = pve.hook_output(Path::new(HOOK), "102", "post-start", &env);
        assert!(out.status.success());
        assert_eq!(pve.take_calls(), CT_ANNOUNCES, "migrated from {migrated:?}");
    }
    let out = pve.hook_output(
        Path::new(HOOK),
        "102",
        "pre-stop",
        &[("VLNET", vlnet.as_os_str())],
    );
    assert!(out.status.success());
    assert_eq!(pve.take_calls(), "");
}

#[test]
fn an_id_that_is_neither_a_vm_nor_a_container_is_skipped_with_a_message() {
    let pve = FakeProxmox::new();
    let out = pve.hook_output(
        Path::new(HOOK),
        "999",
        "post-start",
        &[("VLNET", pve.vlnet().as_os_str())],
    );
    assert!(out.status.success(), "a hook never fails the start");
    assert_eq!(pve.take_calls(), "");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("999 is neither a VM (qm config) nor a container (pct config)"),
        "{said}"
    );
}

/// The chaining script as PROXMOX.md shows it.
fn chain_script() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/PROXMOX.md"))
        .unwrap();
    let start = doc
        .find("#!/bin/sh\n# /var/lib/vz/snippets/hooks.sh")
        .expect("PROXMOX.md shows hooks.sh");
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_owned()
}

#[test]
fn the_chaining_script_of_proxmox_md_runs_both_hooks_and_keeps_the_first_ones_verdict() {
    let pve = FakeProxmox::new();
    let dir = pve.dir();
    script(
        &dir.join("site-hook.pl"),
        &format!(
            "echo \"site $*\" >> {}\n[ \"$2\" = pre-start ] && exit 3\nexit 0",
            dir.join("calls").display()
        ),
    );
    std::fs::copy(HOOK, dir.join("vlnet-hook.sh")).unwrap();
    let chain = dir.join("hooks.sh");
    std::fs::write(&chain, chain_script()).unwrap();
    std::fs::set_permissions(&chain, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let env = [("VLNET", pve.vlnet())];
    let env: Vec<_> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();

    let out = pve.hook_output(&chain, "101", "post-start", &env);
    assert!(out.status.success());
    assert_eq!(
        pve.take_calls(),
        format!("site 101 post-start\n{ANNOUNCES}")
    );
    // The guest's own hook vetoes a start: its verdict stands.
    let out = pve.hook_output(&chain, "101", "pre-start", &env);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(pve.take_calls(), "site 101 pre-start\n");
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
