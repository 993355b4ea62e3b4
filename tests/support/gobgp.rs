//! `gobgpd` (Debian's package) as an EVPN route reflector in a test's
//! namespace, with graceful restart helper mode (RFC 4724) for its clients: a client
//! whose session drops without a NOTIFICATION keeps its routes, stale,
//! until its End-of-RIB or its restart time. FRR 8.4 (Debian's) cannot do
//! this for EVPN: its helper counts non-stop forwarding only for the
//! unicast, multicast and MPLS VPN families and withdraws a restarting
//! peer's EVPN routes at once. Needs `/usr/bin/gobgpd` and `gobgp`; the
//! daemon is killed on drop.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::frr::wait_for;

/// Where Debian installs `gobgpd`.
pub const GOBGPD: &str = "/usr/bin/gobgpd";

/// A `gobgpd` route reflector.
pub struct GoBgp {
    ns: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl GoBgp {
    /// Starts gobgpd in namespace `ns` as router `router_id` of AS `asn`,
    /// reflecting L2VPN EVPN between `clients`, each of which may restart
    /// gracefully; waits until its API answers.
    pub fn reflector(ns: &str, asn: u32, router_id: Ipv4Addr, clients: &[Ipv4Addr]) -> Self {
        assert!(
            Path::new(GOBGPD).exists(),
            "needs GoBGP: apt-get install --no-install-recommends gobgpd"
        );
        let dir = tempfile::Builder::new()
            .prefix("vlt-gobgp")
            .tempdir()
            .unwrap();
        let conf = dir.path().join("gobgpd.toml");
        fs::write(&conf, config(asn, router_id, clients)).unwrap();
        let log = fs::File::create(dir.path().join("gobgpd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["--", GOBGPD, "-t", "toml", "-p", "-l", "debug"])
            .args(["--api-hosts", "127.0.0.1:50051", "--pprof-disable"])
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let gobgp = Self {
            ns: ns.to_owned(),
            child,
            dir,
        };
        assert!(
            wait_for(Duration::from_secs(10), || gobgp
                .try_cli("global")
                .is_some()),
            "gobgpd did not start:\n{}",
            gobgp.log()
        );
        gobgp
    }

    /// The `gobgp` command's output, `None` if it failed.
    fn try_cli(&self, args: &str) -> Option<String> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args([
                "--",
                "sh",
                "-c",
                &format!("gobgp -u 127.0.0.1 -p 50051 {args}"),
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The `gobgp` command's output (e.g. `neighbor`, `global rib -a evpn`).
    pub fn cli(&self, args: &str) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| format!("`gobgp {args}` failed"))
    }

    /// `gobgp neighbor ADDR -j`: the neighbor's state as `gobgpd` reports it.
    pub fn neighbor(&self, addr: Ipv4Addr) -> serde_json::Value {
        serde_json::from_str(&self.cli(&format!("neighbor {addr} -j"))).unwrap_or_default()
    }

    /// Whether the session with `addr` is established.
    pub fn established(&self, addr: Ipv4Addr) -> bool {
        self.neighbor(addr)["state"]["session_state"] == 6
    }

    /// gobgpd's log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("gobgpd.log")
    }
}

impl Drop for GoBgp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// gobgpd's TOML: every client a route-reflector client for L2VPN EVPN,
/// with graceful restart (helper) for that family.
fn config(asn: u32, router_id: Ipv4Addr, clients: &[Ipv4Addr]) -> String {
    let mut conf = format!(
        "[global.config]\n  as = {asn}\n  router-id = \"{router_id}\"\n  \
         local-address-list = [\"{router_id}\"]\n"
    );
    for client in clients {
        write!(
            conf,
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{client}\"\n    \
             peer-as = {asn}\n  \
             [neighbors.route-reflector.config]\n    route-reflector-client = true\n    \
             route-reflector-cluster-id = \"{router_id}\"\n  \
             [neighbors.graceful-restart.config]\n    enabled = true\n    \
             restart-time = 120\n    helper-only = true\n  \
             [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      \
             afi-safi-name = \"l2vpn-evpn\"\n    \
             [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n"
        )
        .unwrap();
    }
    conf
}
