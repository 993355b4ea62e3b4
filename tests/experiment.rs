//! `vlnet lab experiment migration`: for each setting, one real QEMU live
//! migration writes well-formed `results.json` (the documented fields, sane
//! values), `results.csv`, `report.md` and non-empty SVG plots, and leaves no
//! namespace, pinned object or process behind; an interrupted experiment
//! cleans up too; a guest with `--guest-mem` boots with that memory, fills
//! it and keeps dirtying it, and its migration sends it. Needs root, `qemu-system-x86_64` (TCG) and the guest kernel
//! fetched by `tests/install-deps.sh`. The runs take turns: each boots a
//! TCG guest, and two at once on a small machine distort each other.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use support::interrupt::{sigint, wait_for_line};
use support::leftovers::leftovers;

use vlnet_lab::TempDir;

const VLNET: &str = env!("CARGO_BIN_EXE_vlnet");
/// One experiment at a time.
static TURN: Mutex<()> = Mutex::new(());

fn run_one(over: &str) {
    let (_dir, out_dir) = experiment(over, &[]);
    check_outputs(&out_dir, over);
}

/// Runs one migration over `over` with `extra` options; returns the
/// directory that holds the output directory, and the output directory.
fn experiment(over: &str, extra: &[&str]) -> (TempDir, std::path::PathBuf) {
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = TempDir::new("xt").unwrap();
    let out_dir = dir.path().join("out");
    let child = Command::new(VLNET)
        .args([
            "lab",
            "experiment",
            "migration",
            "--over",
            over,
            "--runs",
            "1",
        ])
        .args(extra)
        .args(["--wan-delay", "20ms", "--out"])
        .arg(&out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert_eq!(leftovers(pid), Vec::<String>::new(), "left behind");
    (dir, out_dir)
}

fn check_outputs(dir: &Path, over: &str) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{json}");
    let r = &runs[0];
    assert_eq!(r["setting"], over);
    assert_eq!(r["run"], 1);
    let num = |f: &str| {
        r[f].as_f64()
            .unwrap_or_else(|| panic!("{f} missing in {r}"))
    };
    assert!(num("migration_ms") > 0.0, "{r}");
    assert!(num("downtime_ms") >= 0.0, "{r}");
    assert!(num("pings_sent") > 0.0, "{r}");
    assert!(num("pings_lost") <= num("pings_sent"), "{r}");
    let (before, after) = (num("rtt_before_ms"), num("rtt_after_ms"));
    assert!(before > 0.0 && after > 0.0, "{r}");
    for field in [
        "outage_ms",
        "throughput_before_mbps",
        "throughput_after_mbps",
    ] {
        assert!(r.get(field).is_some(), "{field} missing in {r}");
    }
    if over == "vxlan-wg" {
        // The user sits across the 20 ms WAN before the move, beside the guest after.
        assert!(before > 15.0 && after < before / 2.0, "{r}");
    }
    assert_eq!(json["summary"][0]["setting"], over);
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains(&format!("**{over}**: a move took")),
        "{report}"
    );
    for plot in [
        "migration_ms.svg",
        "downtime_ms.svg",
        "pings_lost.svg",
        "rtt_ms.svg",
    ] {
        let svg = std::fs::read_to_string(dir.join(plot)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains(&format!("\n{over}\n</text>")),
            "{plot}: {svg:.200}"
        );
    }
}

#[test]
fn migration_over_a_lan() {
    run_one("lan");
}

#[test]
fn migration_over_vxlan() {
    run_one("vxlan");
}

#[test]
fn migration_over_vxlan_inside_wireguard_across_a_wan() {
    run_one("vxlan-wg");
}

#[test]
fn a_loaded_guest_of_the_size_asked_for_sends_its_memory() {
    let (_dir, out_dir) = experiment("vxlan", &["--guest-mem", "512M", "--dirty", "8"]);
    check_outputs(&out_dir, "vxlan");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json")).unwrap())
            .unwrap();
    let memory = &json["parameters"]["guest_memory"];
    assert_eq!(memory["mib"], 512, "{memory}");
    assert_eq!(memory["load"]["fill_mib"], 256, "{memory}");
    assert_eq!(memory["load"]["dirty_mib_per_s"], 8, "{memory}");
    let r = &json["runs"][0];
    // The 256 MiB of data crossed (an idle guest sends about 95 MiB: what
    // its kernel and initramfs hold).
    assert!(r["ram_mib"].as_f64().unwrap() > 256.0, "{r}");
    assert!(r["dirty_rate_mib_s"].as_f64().unwrap() > 0.0, "{r}");
    eprintln!("loaded guest: {r}");
    let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        report.contains("Guest: 512 MiB, loaded: 256 MiB"),
        "{report}"
    );
}

#[test]
fn an_interrupted_experiment_leaves_nothing_behind() {
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = TempDir::new("xt").unwrap();
    let mut child = Command::new(VLNET)
        .args(["lab", "experiment", "migration", "--over", "lan", "--out"])
        .arg(dir.path().join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Interrupt while the guest runs: QEMU and the test-bed are up.
    wait_for_line(
        &mut lines,
        |l| l.contains("run 1/"),
        Duration::from_mins(3),
        "run 1",
    );
    sigint(pid);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted experiment must fail");
    assert!(
        rest.iter().any(|l| l.contains("interrupted")),
        "{}",
        rest.join("\n")
    );
    assert_eq!(leftovers(pid), Vec::<String>::new(), "left behind");
}
