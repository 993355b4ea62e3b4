//! What operators read: an unprivileged daemon says it needs root, each
//! error is said once with what to do, no colour codes unless standard
//! error is a terminal, `--log-format json` gives one JSON object a line.
//! Needs root (to drop to `nobody` with setpriv); no namespaces.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

use support::node::vlnet_binary;
use vlnet_lab::TempDir;

/// A config any user may read, naming nothing that exists.
fn readable_config(dir: &TempDir) -> std::path::PathBuf {
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("vlnet.toml");
    std::fs::write(
        &path,
        format!(
            "[node]\nname = \"msg-{}\"\nunderlay = \"ul0\"\nstate_dir = \"{}/state\"\n\
             api_socket = \"{}/api.sock\"\n[[vni]]\nid = 100\nbridge = \"br100\"\n",
            std::process::id(),
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// Runs `vlnet ARGS…` (as `nobody` if asked); returns (success, stderr).
fn vlnet(args: &[&str], as_nobody: bool) -> (bool, String) {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(vlnet_binary());
        c
    } else {
        Command::new(vlnet_binary())
    };
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .env_remove("VLNET_LOG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unprivileged_daemon_says_it_needs_root_once() {
    let dir = TempDir::new("msg").unwrap();
    let config = readable_config(&dir);
    let (ok, err) = vlnet(&["daemon", "--config", config.to_str().unwrap()], true);
    assert!(!ok, "an unprivileged daemon started: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with(
            "vlnet: vlnet daemon needs root (or CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_PERFMON)"
        ),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no colour codes off a terminal: {err:?}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "nothing touched before the check"
    );
}

#[test]
fn a_missing_config_is_said_once_with_what_to_do() {
    let (ok, err) = vlnet(&["daemon", "--config", "/nonexistent/vlnet.toml"], false);
    assert!(!ok);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("/nonexistent/vlnet.toml"), "{err}");
    assert!(err.contains("vlnet.toml.example"), "says what to do: {err}");
}

#[test]
fn json_logs_are_one_object_a_line() {
    let (ok, err) = vlnet(
        &[
            "--log-format",
            "json",
            "daemon",
            "--config",
            "/nonexistent/vlnet.toml",
        ],
        false,
    );
    assert!(!ok);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let last = lines.last().expect("the error is logged");
    assert_eq!(last["level"], "ERROR", "{last}");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("cannot read config"), "{last}");
    assert!(last["timestamp"].as_str().unwrap().contains('T'), "{last}");
}
