//! A network namespace entered by the current test thread only (setns), for
//! `BPF_PROG_TEST_RUN`, whose FIB lookups and redirect targets resolve in the
//! caller's namespace. Removed, and the thread moved back, on drop.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

use std::sync::atomic::{AtomicU32, Ordering};
use vlnet_dataplane::mac::MacAddr;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// RAII guard: the calling thread lives in a fresh `vlt-` namespace.
pub struct ThreadNetNs {
    name: String,
    home: File,
}

impl ThreadNetNs {
    /// Creates `vlt-<tag>-<pid>-<n>` and moves the calling thread into it.
    pub fn enter(tag: &str) -> Self {
        let name = format!(
            "vlt-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name} failed");
        let home = File::open("/proc/thread-self/ns/net").unwrap();
        let target = File::open(format!("/run/netns/{name}")).unwrap();
        // SAFETY: setns on valid namespace fds affects only this thread.
        let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "setns into {name}: {}",
            std::io::Error::last_os_error()
        );
        let ns = Self { name, home };
        ns.sh("ip link set lo up");
        ns
    }

    /// Runs a shell command inside the namespace; panics with its output on failure.
    pub fn sh(&self, cmd: &str) -> String {
        sh_in(&self.name, cmd)
    }

    /// Index of `ifname` in this namespace.
    pub fn ifindex(&self, ifname: &str) -> u32 {
        self.sh(&format!("ip -o link show {ifname} | cut -d: -f1"))
            .trim()
            .parse()
            .unwrap()
    }

    /// MAC address of `ifname`.
    pub fn mac(&self, ifname: &str) -> [u8; 6] {
        let out = self.sh(&format!("ip -o link show {ifname}"));
        let text = out.split("link/ether ").nth(1).unwrap();
        let mac: MacAddr = text.split_whitespace().next().unwrap().parse().unwrap();
        mac.0
    }
}

impl Drop for ThreadNetNs {
    fn drop(&mut self) {
        // SAFETY: `home` is the namespace this thread started in.
        unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) };
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a shell command inside the named namespace (`/run/netns/<ns>`);
/// panics with its output on failure.
pub fn sh_in(ns: &str, cmd: &str) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["--", "sh", "-c", cmd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` in {ns} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
