//! `vlnet lab demo`, the README's main job: it runs to completion in under
//! three minutes, the VM migrated from the cloud to the client answers the
//! client user at the same IP (with the LAN's RTT instead of the WAN's),
//! the kernel-vxlan node works beside vlnet and keeps reaching the VM after
//! it moved to the client (cloud-1 relays), no plain VXLAN crosses the
//! WAN, and nothing is left behind — also when the demo is interrupted.
//! Needs root, QEMU and the guest kernel (`tests/install-deps.sh`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::interrupt::{sigint, wait_for_line};
use support::leftovers::leftovers;

const VLNET: &str = env!("CARGO_BIN_EXE_vlnet");

/// The summary row starting with `label`, split into its value columns
/// (the label's own words dropped).
fn row<'a>(stdout: &'a str, label: &str) -> Vec<&'a str> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in\n{stdout}"));
    line[label.len()..].split_whitespace().collect()
}

#[test]
fn demo_migrates_the_vm_to_the_client_and_keeps_its_ip() {
    let started = Instant::now();
    let demo = Command::new(VLNET)
        .args(["lab", "demo", "--wan-delay", "20ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = demo.id();
    let out = demo.wait_with_output().unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_mins(3), "took {took:?}\n{stdout}");
    assert!(
        stdout.contains(
            "VM 192.0.2.100 after the move: reachable at the same IP from the client user: yes, \
             from cloud-2 (kernel vxlan): yes"
        ),
        "{stdout}"
    );
    let rtt: Vec<f64> = row(&stdout, "  ping RTT median (ms)")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        rtt[0] > 18.0,
        "before the move the user crosses the 20 ms WAN: {rtt:?}"
    );
    assert!(rtt[1] < 5.0, "after the move the VM is local: {rtt:?}");
    for who in ["client user", "cloud-2 VM"] {
        let lost = row(&stdout, &format!("  pings lost, {who} (every 10 ms)"));
        let (lost, sent): (u32, u32) = (lost[0].parse().unwrap(), lost[2].parse().unwrap());
        assert!(sent > 100 && lost < sent / 4, "{who}: {lost} of {sent}");
    }
    let relayed = row(&stdout, "  pings cloud-2 → VM (relayed after the move)");
    assert_eq!(
        relayed[0], "20/20",
        "cloud-2 → VM in the cloud: {relayed:?}"
    );
    let wan = row(&stdout, "  WAN packets sampled / plain VXLAN");
    assert_eq!(wan[1..], ["/", "0"], "plain VXLAN on the WAN: {wan:?}");
    assert_eq!(
        row(&stdout, "  pings kernel → vlnet / vlnet → kernel"),
        ["20/20", "20/20"]
    );
    assert!(stdout.contains("VNI 100 on all: true"), "{stdout}");
    assert!(stdout.contains("member1  connected"), "{stdout}");
    assert!(stdout.contains("demo finished"), "{stdout}");
    assert_eq!(leftovers(pid), Vec::<String>::new(), "left behind");
}

#[test]
fn an_interrupted_demo_leaves_nothing_behind() {
    let mut demo = Command::new(VLNET)
        .args(["lab", "demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = demo.id();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    // Step 4 boots the QEMU guest: by then the cloud, the client, the WAN,
    // both daemons, WireGuard and the delay line all exist.
    wait_for_line(
        &mut lines,
        |l| l.starts_with("[4/8]"),
        Duration::from_mins(1),
        "step 4",
    );
    std::thread::sleep(Duration::from_secs(1));
    sigint(pid);
    let out = demo.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an interrupted demo must not report success"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(
        leftovers(pid),
        Vec::<String>::new(),
        "left behind after the interrupt"
    );
}
