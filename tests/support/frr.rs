//! FRR 8.4 (Debian `frr`) as an EVPN route reflector in a test's
//! namespace: zebra and bgpd with a config, pid files and sockets of their
//! own (`advertise-all-vni`, one iBGP route-reflector client), stopped by
//! their pids on drop. Needs `/usr/lib/frr/{zebra,bgpd}` and `vtysh`.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where Debian installs FRR's daemons.
pub const FRR_BIN: &str = "/usr/lib/frr";

/// zebra and bgpd of one FRR node.
pub struct Frr {
    ns: String,
    dir: tempfile::TempDir,
}

impl Frr {
    /// Starts zebra and bgpd in namespace `ns` as router `router_id` of AS
    /// `asn`, with `client` as its one route-reflector client; waits until
    /// both answer on their vty sockets.
    pub fn start(ns: &str, asn: u32, router_id: Ipv4Addr, client: Ipv4Addr) -> Self {
        assert!(
            Path::new(FRR_BIN).join("bgpd").exists(),
            "needs FRR: apt-get install --no-install-recommends frr"
        );
        let dir = tempfile::Builder::new()
            .prefix("vlt-frr")
            .tempdir()
            .unwrap();
        let frr = Self {
            ns: ns.to_owned(),
            dir,
        };
        // The daemons drop to user frr: the run directory must be theirs,
        // the ones above it traversable.
        let root = frr.dir.path();
        fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let run_dir = frr.run_dir();
        fs::create_dir(&run_dir).unwrap();
        frr.sh(&format!("chown frr:frr {}", run_dir.display()));
        let conf = root.join("frr.conf");
        fs::write(
            &conf,
            format!(
                "frr defaults datacenter\nhostname vlt-frr\nlog file {log}\n\
                 router bgp {asn}\n bgp router-id {router_id}\n no bgp default ipv4-unicast\n\
                 neighbor {client} remote-as {asn}\n address-family l2vpn evpn\n\
                 \x20 neighbor {client} activate\n  neighbor {client} route-reflector-client\n\
                 \x20 advertise-all-vni\n exit-address-family\n",
                log = run_dir.join("frr.log").display()
            ),
        )
        .unwrap();
        for daemon in ["zebra", "bgpd"] {
            frr.sh(&format!(
                "{FRR_BIN}/{daemon} -d -f {conf} -i {run}/{daemon}.pid -z {run}/zserv.api --vty_socket {run} -u frr -g frr",
                conf = conf.display(),
                run = run_dir.display()
            ));
            let vty = run_dir.join(format!("{daemon}.vty"));
            assert!(
                wait_for(Duration::from_secs(10), || vty.exists()),
                "{daemon} did not start"
            );
        }
        frr
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// A shell command in FRR's namespace; panics with its output on failure.
    pub fn sh(&self, cmd: &str) -> String {
        super::thread_netns::sh_in(&self.ns, cmd)
    }

    /// A vtysh command's output.
    pub fn vtysh(&self, cmd: &str) -> String {
        self.sh(&format!(
            "vtysh --vty_socket {} -c '{cmd}'",
            self.run_dir().display()
        ))
    }

    /// FRR's log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.run_dir().join("frr.log")).unwrap_or_default()
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        for daemon in ["bgpd", "zebra"] {
            let pid = fs::read_to_string(self.run_dir().join(format!("{daemon}.pid")))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            if let Some(pid) = pid.filter(|p| *p > 1) {
                // SAFETY: signals one process this test started, by its pid.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                let proc_dir = PathBuf::from(format!("/proc/{pid}"));
                if !wait_for(Duration::from_secs(5), || !proc_dir.exists()) {
                    // SAFETY: as above.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

/// Polls `f` every 100 ms until it holds or `limit` passes; whether it held.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
