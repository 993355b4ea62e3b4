//! `vlnet lab demo`, the README's main job: it runs to completion with no
//! ping lost across the tunnel, and an interrupted demo leaves no namespace,
//! pinned object or process behind. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::leftovers::leftovers;

const VLNET: &str = env!("CARGO_BIN_EXE_vlnet");

#[test]
fn demo_runs_to_completion() {
    let out = Command::new(VLNET).args(["lab", "demo"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pings = stdout
        .lines()
        .find(|l| l.starts_with("ping received / sent"))
        .unwrap();
    assert_eq!(pings.matches("20/20").count(), 2, "{pings}");
    assert!(stdout.contains("VNI 100 on all: true"), "{stdout}");
    assert!(stdout.contains("demo finished"), "{stdout}");
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
    let started = Instant::now();
    loop {
        let line = lines.next().expect("demo output ended early").unwrap();
        if line.starts_with("[2/5]") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "demo never reached step 2"
        );
    }
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGINT) };
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
