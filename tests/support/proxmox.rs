//! Proxmox stand-ins for running the hookscript where there is no Proxmox:
//! `qm` prints VM 101's config, `pct` container 102's (each fails for any
//! other id, as they do), a fake `vlnet` records its arguments.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use vlnet_lab::TempDir;

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

/// Container 102 as `pct config 102` prints it: two network interfaces,
/// one without a MAC yet (Proxmox writes `hwaddr` at the first start).
pub const PCT_CONFIG: &str = "arch: amd64
hostname: ct1
net0: name=eth0,bridge=vnet100,firewall=1,hwaddr=BC:24:11:2A:3B:4E,ip=dhcp,type=veth
net1: name=eth1,bridge=vmbr0,ip=dhcp,type=veth
net2: name=eth2,bridge=vnet200,hwaddr=BC:24:11:2A:3B:4F,ip=192.0.2.9/24,type=veth
rootfs: local-lvm:vm-102-disk-0,size=8G
";

/// What the fake `vlnet` records for container 102's announces.
pub const CT_ANNOUNCES: &str = "ctl vm moved BC:24:11:2A:3B:4E --bridge vnet100\n\
                                ctl vm moved BC:24:11:2A:3B:4F --bridge vnet200\n";

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
        script(
            &dir.path().join("path/pct"),
            &format!("[ \"$1 $2\" = \"config 102\" ] && cat <<'EOF'\n{PCT_CONFIG}EOF"),
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

    /// Runs `hook 101 PHASE` as Proxmox does (its `PATH`, plus `qm` and
    /// `pct`) with `env` added; asserts it succeeds and returns (and
    /// forgets) the arguments of every `vlnet` call it made.
    pub fn run_hook(&self, hook: &Path, phase: &str, env: &[(&str, &OsStr)]) -> String {
        let out = self.hook_output(hook, "101", phase, env);
        assert!(out.status.success(), "{} failed in {phase}", hook.display());
        self.take_calls()
    }

    /// Runs `hook ID PHASE` as [`run_hook`](Self::run_hook) does, and
    /// returns its output (the `vlnet` calls stay for
    /// [`take_calls`](Self::take_calls)).
    pub fn hook_output(
        &self,
        hook: &Path,
        id: &str,
        phase: &str,
        env: &[(&str, &OsStr)],
    ) -> std::process::Output {
        let path = format!("{}:{PVE_PATH}", self.dir.path().join("path").display());
        Command::new(hook)
            .args([id, phase])
            .env("PATH", path)
            .env_remove("VLNET")
            .env_remove("PVE_MIGRATED_FROM")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// The arguments of every `vlnet` call since the last time, forgotten.
    pub fn take_calls(&self) -> String {
        let calls = std::fs::read_to_string(self.calls()).unwrap_or_default();
        let _ = std::fs::remove_file(self.calls());
        calls
    }

    /// This stand-in's own directory (for more scripts).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
