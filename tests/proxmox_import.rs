//! `vlnet import-proxmox`: a Proxmox SDN VXLAN zone, written as Proxmox
//! writes `zones.cfg` and `vnets.cfg`, becomes `[[vni]]` sections that make
//! a valid vlnet config; a malformed file is refused naming file and line.
//! Needs nothing but the binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::process::Command;

use support::node::vlnet_binary;
use vlnet_dataplane::config::Config;
use vlnet_lab::TempDir;

const ZONES: &str = "\
vxlan: class
\tpeers 198.18.0.1,198.18.0.2,198.18.0.3
\tipam pve
\tmtu 1450
";
const VNETS: &str = "\
vnet: vnet100
\tzone class
\ttag 100

vnet: vnet200
\tzone class
\ttag 200
";

fn import(dir: &std::path::Path) -> std::process::Output {
    Command::new(vlnet_binary())
        .args(["import-proxmox", "--sdn"])
        .arg(dir)
        .args(["--vtep", "198.18.0.1"])
        .output()
        .unwrap()
}

#[test]
fn a_zone_becomes_vni_sections_of_a_valid_config() {
    let dir = TempDir::new("sdn").unwrap();
    std::fs::write(dir.path().join("zones.cfg"), ZONES).unwrap();
    std::fs::write(dir.path().join("vnets.cfg"), VNETS).unwrap();
    let out = import(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sections = String::from_utf8(out.stdout).unwrap();
    let text =
        format!("[node]\nname = \"gw\"\nunderlay = \"ul0\"\nvtep = \"198.18.0.1\"\n{sections}");
    let cfg = Config::parse(&text, std::path::Path::new("imported.toml")).unwrap();
    let vnis: Vec<(u32, &str, usize)> = cfg
        .vni
        .iter()
        .map(|v| (v.id, v.bridge.as_str(), v.peers.len()))
        .collect();
    assert_eq!(vnis, [(100, "vnet100", 2), (200, "vnet200", 2)]);
}

#[test]
fn a_malformed_zone_is_refused_naming_file_and_line() {
    let dir = TempDir::new("sdn").unwrap();
    std::fs::write(
        dir.path().join("zones.cfg"),
        "vxlan: class\n\tpeers 198.18.0.1,not-an-address\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("vnets.cfg"), VNETS).unwrap();
    let out = import(dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zones.cfg:2"), "{err}");
    assert!(err.contains("not-an-address"), "{err}");
}
