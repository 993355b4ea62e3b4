//! The .deb on this machine, with dpkg: `deploy/deb/build.sh` packs the
//! release build the suite already made (no compile of its own), `dpkg -i`
//! puts every file in place (the binary stripped, the unit and hookscript
//! pointing at /usr/bin/vlnet, completions, man pages), a config appears
//! beside the example and the service is neither enabled nor started; a
//! newer package installs over it and keeps the admin's config; `dpkg
//! --purge` leaves nothing behind. Needs root and cargo-deb
//! (tests/install-deps.sh). It installs into the system, so it refuses to
//! run where vlnet is installed or has state already, and purges on failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vlnet_lab::TempDir;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything the package puts on the system (and the config its postinst
/// makes), with its mode.
const FILES: [(&str, u32); 15] = [
    ("/usr/bin/vlnet", 0o755),
    ("/lib/systemd/system/vlnet.service", 0o644),
    ("/etc/vlnet/vlnet.toml.example", 0o644),
    ("/etc/vlnet/vlnet.toml", 0o640),
    ("/usr/share/vlnet/vlnet-hook.sh", 0o755),
    ("/usr/share/vlnet/prometheus/prometheus.yml", 0o644),
    ("/usr/share/vlnet/prometheus/vlnet-alerts.yml", 0o644),
    ("/usr/share/vlnet/grafana/vlnet-dashboard.json", 0o644),
    ("/usr/share/bash-completion/completions/vlnet", 0o644),
    ("/usr/share/zsh/vendor-completions/_vlnet", 0o644),
    ("/usr/share/fish/vendor_completions.d/vlnet.fish", 0o644),
    ("/usr/share/man/man1/vlnet.1.gz", 0o644),
    ("/usr/share/man/man1/vlnet-ctl-leave.1.gz", 0o644),
    ("/usr/share/doc/vlnet/README.md", 0o644),
    ("/usr/share/doc/vlnet/PROXMOX.md", 0o644),
];

/// Runs `program args…`, returning its output.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Runs `program args…`; panics with its output unless it succeeds.
fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the package at `version` into `out`; its path.
fn build(version: &str, out: &Path) -> PathBuf {
    let script = format!("{SRC}/deploy/deb/build.sh");
    let printed = ok(
        &script,
        &["--version", version, "--out", out.to_str().unwrap()],
    );
    let deb = PathBuf::from(printed.trim());
    assert!(deb.is_file(), "no .deb at {printed:?}");
    deb
}

/// The installed package's version, if any.
fn installed() -> Option<String> {
    let out = run("dpkg-query", &["-W", "-f=${Status} ${Version}", "vlnet"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.strip_prefix("install ok installed ")
        .map(str::to_owned)
}

/// Purges the package when dropped, so a failed test leaves nothing.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "vlnet"]);
    }
}

/// The binary carries no debug sections (cargo-deb stripped it).
fn assert_stripped(binary: &str) {
    let sections = ok("readelf", &["-S", "-W", binary]);
    assert!(sections.contains(".text"), "{sections}");
    assert!(!sections.contains(".debug_info"), "not stripped");
}

#[test]
fn the_deb_installs_upgrades_and_purges_without_a_trace() {
    assert!(
        installed().is_none(),
        "vlnet is installed on this machine: this test would replace it"
    );
    for path in ["/var/lib/vlnet", "/etc/vlnet"] {
        assert!(
            !Path::new(path).exists(),
            "{path} exists: this test would purge it"
        );
    }
    let dir = TempDir::new("deb").unwrap();
    let first = build(VERSION, dir.path());
    let newer = format!("{VERSION}+upgrade");
    let second = build(&newer, dir.path());

    let _purge = Installed;
    ok("dpkg", &["-i", first.to_str().unwrap()]);
    assert_eq!(installed().as_deref(), Some(VERSION));
    for (path, mode) in FILES {
        let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{path}");
    }
    assert_stripped("/usr/bin/vlnet");
    let version = ok("/usr/bin/vlnet", &["--version"]);
    assert_eq!(version.trim(), format!("vlnet {VERSION}"));
    let unit = std::fs::read_to_string("/lib/systemd/system/vlnet.service").unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/bin/vlnet daemon "),
        "{unit}"
    );
    assert!(unit.contains("\nExecReload=/usr/bin/vlnet ctl "), "{unit}");
    assert!(
        unit.contains("\nDocumentation=file:///usr/share/doc/vlnet/README.md\n"),
        "{unit}"
    );
    // Unknown keys, bad values and a missing binary would be said here.
    let verify = run(
        "systemd-analyze",
        &["verify", "/lib/systemd/system/vlnet.service"],
    );
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    let hook = std::fs::read_to_string("/usr/share/vlnet/vlnet-hook.sh").unwrap();
    assert!(hook.contains("vlnet=${VLNET:-/usr/bin/vlnet}"), "{hook}");
    let example = std::fs::read("/etc/vlnet/vlnet.toml.example").unwrap();
    assert_eq!(std::fs::read("/etc/vlnet/vlnet.toml").unwrap(), example);
    let page = ok(
        "sh",
        &["-c", "zcat /usr/share/man/man1/vlnet-ctl-leave.1.gz"],
    );
    assert!(page.contains(".TH vlnet-ctl-leave 1"), "{page}");
    // Never enabled, never started: nothing wants it, no daemon runs.
    assert!(!Path::new("/etc/systemd/system/multi-user.target.wants/vlnet.service").exists());
    assert!(!Path::new("/run/vlnet/vlnet.sock").exists());

    // An admin's config survives an upgrade.
    std::fs::write("/etc/vlnet/vlnet.toml", "# mine\n").unwrap();
    ok("dpkg", &["-i", second.to_str().unwrap()]);
    assert_eq!(installed(), Some(newer));
    assert_eq!(
        std::fs::read_to_string("/etc/vlnet/vlnet.toml").unwrap(),
        "# mine\n"
    );
    assert_stripped("/usr/bin/vlnet");

    // Purge: no file of the package, no config, no state.
    std::fs::create_dir_all("/var/lib/vlnet").unwrap();
    std::fs::write("/var/lib/vlnet/pve1.state.json", "{}").unwrap();
    ok("dpkg", &["--purge", "vlnet"]);
    assert!(installed().is_none());
    for (path, _) in FILES {
        assert!(!Path::new(path).exists(), "{path} left behind");
    }
    for path in [
        "/etc/vlnet",
        "/var/lib/vlnet",
        "/usr/share/vlnet",
        "/usr/share/doc/vlnet",
    ] {
        assert!(!Path::new(path).exists(), "{path} left behind");
    }
}
