//! Proxmox stand-ins for running the hookscript where there is no Proxmox:
//! `qm` prints VM 101's config, a fake `vlnet` records its arguments.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use vlnet::lab::TempDir;

/// VM 101 as `qm config 101` prints it: two network interfaces.
pub const QM_CONFIG: &str = "boot: order=scsi0;net0
cores: 2
name: web1
net0: virtio=BC:24:11:2A:3B:4C,bridge=vnet100,firewall=1
net1: e1000=BC:24:11:2A:3B:4D,bridge=vmbr0
scsi0: local-lvm:vm-101-disk-0,size=8G
";

/// What the fake `vlnet` records for VM 101's announces.
pub const ANNOUNCES: &str = "ctl vm moved BC:24:11:2A:3B:4C --bridge vnet100\n\
                             ctl vm moved BC:24:11:2A:3B:4D --bridge vmbr0\n";

/// The `PATH` Proxmox runs hookscripts with (`PVE::CLIHandler`,
/// `PVE::Daemon`): no `/usr/local/bin`.
pub const PVE_PATH: &str = "/sbin:/bin:/usr/sbin:/usr/bin";

/// Writes `body` as an executable `/bin/sh` script at `path`.
pub fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory holding `qm` (in `path/`, put on `PATH`) and a fake
/// `vlnet` (not on `PATH`); removed on drop.
pub struct FakeProxmox {
    dir: TempDir,
}

impl FakeProxmox {
    /// Writes the stand-ins.
    pub fn new() -> Self {
        let dir = TempDir::new("pve").unwrap();
        std::fs::create_dir(dir.path().join("path")).unwrap();
        script(
            &dir.path().join("path/qm"),
            &format!("[ \"$1 $2\" = \"config 101\" ] && cat <<'EOF'\n{QM_CONFIG}EOF"),
        );
        let fake = Self { dir };
        script(
            &fake.vlnet(),
            &format!("echo \"$*\" >> {}", fake.calls().display()),
        );
        fake
    }

    /// The fake `vlnet`.
    pub fn vlnet(&self) -> PathBuf {
        self.dir.path().join("vlnet")
    }

    fn calls(&self) -> PathBuf {
        self.dir.path().join("calls")
    }

    /// Runs `hook 101 PHASE` as Proxmox does (its `PATH`, plus `qm`) with
    /// `env` added; asserts it succeeds and returns (and forgets) the
    /// arguments of every `vlnet` call it made.
    pub fn run_hook(&self, hook: &Path, phase: &str, env: &[(&str, &OsStr)]) -> String {
        let path = format!("{}:{PVE_PATH}", self.dir.path().join("path").display());
        let status = Command::new(hook)
            .args(["101", phase])
            .env("PATH", path)
            .env_remove("VLNET")
            .env_remove("PVE_MIGRATED_FROM")
            .envs(env.iter().copied())
            .status()
            .unwrap();
        assert!(status.success(), "{} failed in {phase}", hook.display());
        let calls = std::fs::read_to_string(self.calls()).unwrap_or_default();
        let _ = std::fs::remove_file(self.calls());
        calls
    }
}
