//! `vlnet lab bench --json` run from a test.

use std::process::Command;

use super::node::vlnet_binary;

/// Runs `vlnet lab bench --json` with `args`: its JSON and its stderr (the
/// progress lines). Panics with both when it fails or prints no JSON.
pub fn bench_json(args: &[&str]) -> (serde_json::Value, String) {
    let output = Command::new(vlnet_binary())
        .args(["lab", "bench", "--json"])
        .args(args)
        .output()
        .expect("run vlnet lab bench");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "vlnet lab bench failed:\n{stderr}");
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n--- stderr ---\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    (json, stderr)
}
