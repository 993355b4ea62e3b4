//! The Proxmox hookscript in `deploy/`: for a migrated (or started) VM it
//! calls `vlnet ctl vm moved MAC --bridge BR` once per network interface, and
//! does nothing in other phases. `qm` and `vlnet` are stand-ins that print a
//! Proxmox VM config and record their arguments (no Proxmox here).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use vlnet::lab::TempDir;

const HOOK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/proxmox-hookscript.sh"
);

const QM_CONFIG: &str = "boot: order=scsi0;net0
cores: 2
name: web1
net0: virtio=BC:24:11:2A:3B:4C,bridge=vnet100,firewall=1
net1: e1000=BC:24:11:2A:3B:4D,bridge=vmbr0
scsi0: local-lvm:vm-101-disk-0,size=8G
";

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the hook for VM 101 in `phase`; returns what `vlnet` was called with.
fn run_hook(phase: &str) -> String {
    let dir = TempDir::new("hook").unwrap();
    let calls = dir.path().join("calls");
    script(
        &dir.path().join("qm"),
        &format!("[ \"$1 $2\" = \"config 101\" ] && cat <<'EOF'\n{QM_CONFIG}EOF"),
    );
    script(
        &dir.path().join("vlnet"),
        &format!("echo \"$*\" >> {}", calls.display()),
    );
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let status = Command::new("bash")
        .args([HOOK, "101", phase])
        .env("PATH", path)
        .status()
        .unwrap();
    assert!(status.success(), "hook failed in {phase}");
    std::fs::read_to_string(&calls).unwrap_or_default()
}

#[test]
fn after_a_migration_every_interface_is_announced() {
    let calls = run_hook("post-migrate");
    assert_eq!(
        calls,
        "ctl vm moved BC:24:11:2A:3B:4C --bridge vnet100\n\
         ctl vm moved BC:24:11:2A:3B:4D --bridge vmbr0\n"
    );
    assert_eq!(run_hook("post-start"), calls);
}

#[test]
fn other_phases_do_nothing() {
    for phase in ["pre-start", "pre-stop", "post-stop"] {
        assert_eq!(run_hook(phase), "", "{phase}");
    }
}
