//! `deploy/install.sh`: staged installs (`--destdir`) of the built binary
//! into a temporary directory, removed even when a test fails. Checks the
//! files and their modes, the prefix in the unit and the hookscript, that an
//! admin's config survives installs and uninstalls, refused arguments, a
//! binary replaced while it runs, and `systemd-analyze verify` on the unit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::proxmox::{FakeProxmox, ANNOUNCES};
use vlnet_lab::{ChildGuard, TempDir};

const INSTALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/install.sh");
const VLNET: &str = env!("CARGO_BIN_EXE_vlnet");
const UNIT: &str = "/etc/systemd/system/vlnet.service";
const CONFIG: &str = "/etc/vlnet/vlnet.toml";
const EXAMPLE: &str = "/etc/vlnet/vlnet.toml.example";
/// The example config in the source tree (what a fresh install copies).
const EXAMPLE_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/vlnet.toml.example");

/// An install staged in a temporary directory: `dest/` is the `--destdir`;
/// [`prefix`](Self::prefix), beside it, is a `--prefix` that
/// [`publish_prefix`](Self::publish_prefix) can make real.
struct Stage {
    dir: TempDir,
}

impl Stage {
    fn new() -> Self {
        Self {
            dir: TempDir::new("deploy").unwrap(),
        }
    }

    /// A prefix of this stage's own (an absolute path that does not exist).
    fn prefix(&self) -> String {
        self.dir.path().join("prefix").display().to_string()
    }

    /// Where the staged tree holds `path` (absolute, as after the copy to /).
    fn staged(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        self.dir
            .path()
            .join("dest")
            .join(path.strip_prefix("/").unwrap())
    }

    /// Makes [`prefix`](Self::prefix) point at its staged copy, as copying
    /// the staged tree to / would, so that paths the install wrote into
    /// files (`ExecStart`, the hookscript's binary) exist.
    fn publish_prefix(&self) {
        std::os::unix::fs::symlink(self.staged(self.prefix()), self.prefix()).unwrap();
    }

    /// Runs `install.sh --destdir DEST ARGS…`.
    fn run(&self, args: &[&str]) -> Output {
        let dest = self.dir.path().join("dest");
        Command::new(INSTALL)
            .arg("--destdir")
            .arg(dest)
            .args(args)
            .output()
            .unwrap()
    }

    /// [`run`](Self::run), asserting that it succeeds.
    fn install(&self, args: &[&str]) {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "install.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn mode(&self, path: impl AsRef<Path>) -> u32 {
        let path = self.staged(path);
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        meta.permissions().mode() & 0o7777
    }

    fn read(&self, path: impl AsRef<Path>) -> String {
        std::fs::read_to_string(self.staged(path)).unwrap()
    }

    fn exists(&self, path: impl AsRef<Path>) -> bool {
        self.staged(path).exists()
    }
}

/// The unit's value of `key` (its first line `key=…`).
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
        .to_owned()
}

/// The exit status must be a failure whose message contains `needle`.
fn assert_refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted; stderr: {stderr}");
    assert!(
        stderr.contains(needle),
        "message does not name {needle:?}: {stderr}"
    );
}

#[test]
fn installs_every_file_with_its_mode() {
    let stage = Stage::new();
    stage.install(&["--binary", VLNET]);
    let files = [
        ("/usr/local/bin/vlnet", 0o755),
        (UNIT, 0o644),
        (CONFIG, 0o640),
        (EXAMPLE, 0o644),
        ("/usr/local/share/vlnet/vlnet-hook.sh", 0o755),
        ("/usr/local/share/vlnet/prometheus/prometheus.yml", 0o644),
        ("/usr/local/share/vlnet/prometheus/vlnet-alerts.yml", 0o644),
        (
            "/usr/local/share/vlnet/prometheus/vlnet-alerts.test.yml",
            0o644,
        ),
        ("/usr/local/share/vlnet/grafana/vlnet-dashboard.json", 0o644),
        ("/usr/local/share/doc/vlnet/README.md", 0o644),
        ("/usr/local/share/doc/vlnet/PROXMOX.md", 0o644),
    ];
    for (path, mode) in files {
        assert_eq!(
            stage.mode(path),
            mode,
            "{path}: mode {:o}",
            stage.mode(path)
        );
    }
    assert!(
        std::fs::read(stage.staged("/usr/local/bin/vlnet")).unwrap()
            == std::fs::read(VLNET).unwrap(),
        "the installed binary is not the one given"
    );
    let unit = stage.read(UNIT);
    assert_eq!(
        unit_value(&unit, "ExecStart"),
        "/usr/local/bin/vlnet daemon --config /etc/vlnet/vlnet.toml"
    );
    assert_eq!(
        stage.read(CONFIG),
        std::fs::read_to_string(EXAMPLE_SOURCE).unwrap()
    );
    assert!(
        !stage.exists("/var/lib/vz/snippets/vlnet-hook.sh"),
        "hookscript in the snippets without --proxmox"
    );
}

#[test]
fn the_unit_follows_the_prefix_and_passes_systemd_analyze() {
    let stage = Stage::new();
    let prefix = stage.prefix();
    stage.install(&["--binary", VLNET, "--prefix", &prefix]);
    let unit = stage.read(UNIT);
    assert_eq!(
        unit_value(&unit, "ExecStart"),
        format!("{prefix}/bin/vlnet daemon --config /etc/vlnet/vlnet.toml")
    );
    assert_eq!(
        unit_value(&unit, "ExecReload"),
        format!("{prefix}/bin/vlnet ctl --config /etc/vlnet/vlnet.toml reload")
    );
    assert_eq!(unit_value(&unit, "Type"), "notify");
    assert_eq!(unit_value(&unit, "Before"), "pve-guests.service");
    assert_eq!(
        unit_value(&unit, "Documentation"),
        format!("file://{prefix}/share/doc/vlnet/README.md")
    );
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed (tests/install-deps.sh installs it)");
        return;
    }
    // verify checks that ExecStart's binary exists.
    stage.publish_prefix();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(stage.staged(UNIT))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    // Unknown keys and bad values are only warnings: allow none.
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned: {stderr}"
    );
}

/// The unit's descriptor limit covers every connection cap with room to
/// spare, and is a number (not `infinity`).
#[test]
fn the_unit_limits_descriptors_above_the_connection_caps() {
    use vlnet_dataplane::{api::API_LIMITS, metrics::METRICS_LIMITS};
    /// The control listener's cap: 4 connections per member, 256 members.
    const CONTROL_CONNECTIONS: usize = 4 * 256;
    /// Descriptors beside connections: BPF objects, netlink, ICMP and
    /// packet sockets, UAPI, epoll, the log.
    const OTHER: usize = 200;

    let stage = Stage::new();
    stage.install(&["--binary", VLNET]);
    let unit = stage.read(UNIT);
    let limit: usize = unit_value(&unit, "LimitNOFILE")
        .parse()
        .unwrap_or_else(|e| panic!("LimitNOFILE is not a number: {e}"));
    let needed = METRICS_LIMITS.max_conns + API_LIMITS.max_conns + CONTROL_CONNECTIONS + OTHER;
    assert!(
        limit >= 2 * needed,
        "LimitNOFILE={limit} is not comfortably above the {needed} descriptors the caps allow"
    );
    assert!(
        limit <= 65_536,
        "LimitNOFILE={limit}: a limit that high would not stop a leak"
    );
}

#[test]
fn an_existing_config_is_kept() {
    let stage = Stage::new();
    let config = stage.staged(CONFIG);
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "# the admin's\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    stage.install(&["--binary", VLNET]);
    stage.install(&["--binary", VLNET]);
    assert_eq!(stage.read(CONFIG), "# the admin's\n");
    assert_eq!(stage.mode(CONFIG), 0o600);
    assert!(
        stage.read(EXAMPLE).contains("[node]"),
        "example not installed"
    );
}

#[test]
fn unknown_flags_and_missing_binaries_are_refused() {
    let stage = Stage::new();
    assert_refused(
        &stage.run(&["--binary", VLNET, "--frobnicate"]),
        "--frobnicate",
    );
    assert_refused(
        &stage.run(&["--binary", VLNET, "--prefix"]),
        "--prefix needs a value",
    );
    let missing = stage.staged("/nowhere/vlnet").display().to_string();
    let out = stage.run(&["--binary", &missing]);
    assert_refused(&out, &format!("no vlnet binary at {missing}"));
    assert_refused(&out, "cargo build --release");
    assert!(!stage.exists("/"), "a refused install left files behind");
}

#[test]
fn uninstall_removes_the_files_but_keeps_the_config() {
    let stage = Stage::new();
    let prefix = stage.prefix();
    stage.install(&["--binary", VLNET, "--prefix", &prefix]);
    let enabled = stage.staged("/etc/systemd/system/multi-user.target.wants/vlnet.service");
    std::fs::create_dir_all(enabled.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(UNIT, &enabled).unwrap();
    stage.install(&["--uninstall", "--prefix", &prefix]);
    for path in [
        format!("{prefix}/bin/vlnet"),
        UNIT.to_owned(),
        EXAMPLE.to_owned(),
        format!("{prefix}/share/vlnet"),
        format!("{prefix}/share/doc/vlnet"),
    ] {
        assert!(!stage.exists(&path), "{path} is still there");
    }
    assert!(
        enabled.symlink_metadata().is_err(),
        "the unit is still enabled"
    );
    assert_eq!(
        stage.read(CONFIG),
        std::fs::read_to_string(EXAMPLE_SOURCE).unwrap()
    );
}

#[test]
fn a_running_binary_is_replaced() {
    let stage = Stage::new();
    // Any long-running program stands in for a running daemon.
    stage.install(&["--binary", "/bin/sleep"]);
    // Killed when dropped.
    let mut running =
        ChildGuard::spawn(Command::new(stage.staged("/usr/local/bin/vlnet")).arg("60")).unwrap();
    stage.install(&["--binary", VLNET]);
    assert!(
        running.try_wait().unwrap().is_none(),
        "the running program died"
    );
    assert!(
        std::fs::read(stage.staged("/usr/local/bin/vlnet")).unwrap()
            == std::fs::read(VLNET).unwrap(),
        "the binary was not replaced"
    );
}

#[test]
fn the_installed_hookscript_calls_the_installed_binary_without_path() {
    let pve = FakeProxmox::new();
    let stage = Stage::new();
    let prefix = stage.prefix();
    let fake_vlnet = pve.vlnet().display().to_string();
    stage.install(&["--binary", &fake_vlnet, "--prefix", &prefix, "--proxmox"]);
    let hook = stage.staged("/var/lib/vz/snippets/vlnet-hook.sh");
    assert_eq!(stage.mode("/var/lib/vz/snippets/vlnet-hook.sh"), 0o755);
    assert!(
        !stage.exists(format!("{prefix}/share/vlnet/vlnet-hook.sh")),
        "--proxmox also installed the hookscript in share/"
    );
    stage.publish_prefix();
    assert_eq!(pve.run_hook(&hook, "post-start", &[]), ANNOUNCES);
}
