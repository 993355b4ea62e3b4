//! FRR 8.4 (Debian `frr`) nodes of an EVPN zone in a lab namespace, as
//! Proxmox's EVPN zone writes them: [`Frr`] runs zebra and bgpd with a
//! config, pid files and sockets of their own, iBGP in one AS with
//! `advertise-all-vni`, either a route reflector for several clients or a
//! client of one or two route reflectors ([`Role`]); [`add_vxlan`] gives a
//! node's bridge the kernel VXLAN device that does not learn (zebra
//! installs the remote MACs and flood entries from the routes). The
//! daemons are stopped by their pids on drop. Needs
//! `/usr/lib/frr/{zebra,bgpd}` and `vtysh` ([`installed`] says whether
//! they are there).
//!
//! The namespace is named, not owned (a [`NetNs`](crate::NetNs) or one a
//! test made by hand): commands enter it with `nsenter --net`, as the rest
//! of the lab does.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::primitives::netns::{checked, run_host, LabError, DEFAULT_TIMEOUT};
use crate::primitives::tempdir::TempDir;

/// Where Debian installs FRR's daemons.
pub const FRR_BIN: &str = "/usr/lib/frr";
/// How long [`Frr::start`] waits for each daemon's vty socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Drop`] waits for the daemons to stop after SIGTERM before
/// SIGKILL (each takes 1.5–2 s to stop).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Poll period while waiting for the daemons.
const POLL: Duration = Duration::from_millis(50);

/// Whether FRR's bgpd is installed (where Debian puts it).
#[must_use]
pub fn installed() -> bool {
    Path::new(FRR_BIN).join("bgpd").exists()
}

/// What an FRR node is in the zone's iBGP mesh.
#[derive(Debug, Clone, Copy)]
pub enum Role<'a> {
    /// A route reflector with these route-reflector clients.
    Reflector(&'a [Ipv4Addr]),
    /// A route-reflector client peering with these route reflectors.
    Client(&'a [Ipv4Addr]),
}

/// zebra and bgpd of one FRR node, stopped on drop.
#[derive(Debug)]
pub struct Frr {
    ns: String,
    dir: TempDir,
}

impl Frr {
    /// Starts zebra and bgpd in namespace `ns` (its name) as router
    /// `router_id` of AS `asn` in `role`; waits until both answer on their
    /// vty sockets.
    pub fn start(
        ns: &str,
        asn: u32,
        router_id: Ipv4Addr,
        role: Role<'_>,
    ) -> Result<Self, LabError> {
        if !installed() {
            return Err(LabError::Invalid(format!(
                "{FRR_BIN}/bgpd is missing: apt-get install --no-install-recommends frr"
            )));
        }
        // From here on the guard owns the directory and the daemons.
        let frr = Self {
            ns: ns.to_owned(),
            dir: TempDir::new("frr")?,
        };
        // The daemons drop to user frr: the run directory must be theirs,
        // the ones above it traversable.
        let root = frr.dir.path();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(root, mode)
            .map_err(|e| LabError::io(format!("chmod {}", root.display()), e))?;
        let run_dir = frr.run_dir();
        std::fs::create_dir(&run_dir)
            .map_err(|e| LabError::io(format!("creating {}", run_dir.display()), e))?;
        run_host(&["chown", "frr:frr", &run_dir.to_string_lossy()])?;
        let conf = root.join("frr.conf");
        std::fs::write(
            &conf,
            config(asn, router_id, role, &run_dir.join("frr.log")),
        )
        .map_err(|e| LabError::io(format!("writing {}", conf.display()), e))?;
        for daemon in ["zebra", "bgpd"] {
            frr.sh(&format!(
                "{FRR_BIN}/{daemon} -d -f {conf} -i {run}/{daemon}.pid -z {run}/zserv.api \
                 --vty_socket {run} -u frr -g frr",
                conf = conf.display(),
                run = run_dir.display()
            ))?;
            frr.wait_for_vty(daemon)?;
        }
        Ok(frr)
    }

    fn wait_for_vty(&self, daemon: &str) -> Result<(), LabError> {
        let vty = self.run_dir().join(format!("{daemon}.vty"));
        let deadline = Instant::now() + START_TIMEOUT;
        while !vty.exists() {
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    command: format!("{daemon} (waiting for {})\n{}", vty.display(), self.log()),
                    after: START_TIMEOUT,
                });
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// A shell command in FRR's namespace: its stdout, or what failed.
    pub fn sh(&self, cmd: &str) -> Result<String, LabError> {
        sh_in(&self.ns, cmd)
    }

    /// A vtysh command's output.
    pub fn vtysh(&self, cmd: &str) -> Result<String, LabError> {
        self.sh(&format!(
            "vtysh --vty_socket {} -c '{cmd}'",
            self.run_dir().display()
        ))
    }

    /// FRR's log so far (for failure messages; empty if unreadable).
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.run_dir().join("frr.log")).unwrap_or_default()
    }

    /// Whether the session with `neighbor` is Established (false when vtysh
    /// cannot tell).
    #[must_use]
    pub fn established(&self, neighbor: Ipv4Addr) -> bool {
        self.vtysh(&format!("show bgp neighbors {neighbor}"))
            .is_ok_and(|out| out.contains("BGP state = Established"))
    }

    /// `show evpn mac vni VNI mac MAC json`: the MAC as zebra holds it
    /// (`type` local or remote, `remoteVtep`, `localSequence`,
    /// `remoteSequence`), or `None` if zebra does not know it.
    #[must_use]
    pub fn evpn_mac(&self, vni: u32, mac: &str) -> Option<serde_json::Value> {
        // vtysh fails when zebra does not know the MAC.
        let out = self
            .vtysh(&format!("show evpn mac vni {vni} mac {mac} json"))
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let entry = v.get(mac).cloned().unwrap_or(v);
        entry.get("type").is_some().then_some(entry)
    }

    /// Whether zebra holds `mac` on `vni` as remote, behind `vtep`.
    #[must_use]
    pub fn holds_remote(&self, vni: u32, mac: &str, vtep: Ipv4Addr) -> bool {
        self.evpn_mac(vni, mac)
            .is_some_and(|m| m["type"] == "remote" && m["remoteVtep"] == vtep.to_string())
    }

    /// The MAC Mobility sequence number zebra holds for `mac` on `vni`, if
    /// it holds the MAC as remote behind `vtep`.
    #[must_use]
    pub fn remote_seq(&self, vni: u32, mac: &str, vtep: Ipv4Addr) -> Option<u64> {
        let m = self.evpn_mac(vni, mac)?;
        (m["type"] == "remote" && m["remoteVtep"] == vtep.to_string())
            .then(|| m["remoteSequence"].as_u64())
            .flatten()
    }

    /// Kills bgpd (SIGKILL, by its pid file): its sessions drop at once,
    /// without a NOTIFICATION, as when the process crashes. zebra stays.
    pub fn kill_bgpd(&self) -> Result<(), LabError> {
        let pid = self
            .pid("bgpd")
            .ok_or_else(|| LabError::Invalid("bgpd is not running".into()))?;
        signal(pid, libc::SIGKILL);
        if wait_until(STOP_TIMEOUT, || gone(pid)) {
            Ok(())
        } else {
            Err(LabError::Invalid(format!("bgpd {pid} did not die")))
        }
    }

    /// The pid of `daemon` from its pid file, if that process is still
    /// this daemon (a pid file outlives a killed daemon).
    fn pid(&self, daemon: &str) -> Option<i32> {
        let pid = std::fs::read_to_string(self.run_dir().join(format!("{daemon}.pid")))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|p| *p > 1)?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        (comm.trim() == daemon).then_some(pid)
    }
}

impl Drop for Frr {
    /// SIGTERM to both daemons at once, then SIGKILL to whichever is still
    /// there after [`STOP_TIMEOUT`].
    fn drop(&mut self) {
        let pids: Vec<i32> = ["bgpd", "zebra"]
            .into_iter()
            .filter_map(|d| self.pid(d))
            .collect();
        for &pid in &pids {
            signal(pid, libc::SIGTERM);
        }
        if !wait_until(STOP_TIMEOUT, || pids.iter().all(|&p| gone(p))) {
            for &pid in pids.iter().filter(|&&p| !gone(p)) {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// Sends `sig` to one process this lab started, by its pid.
fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is a
    // daemon this lab started (checked against its pid file and name).
    unsafe { libc::kill(pid, sig) };
}

/// Whether process `pid` is gone.
fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls `f` every [`POLL`] until it holds or `limit` passes; whether it
/// held.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// `sh -c cmd` in namespace `ns` (by name): its stdout, or what failed.
fn sh_in(ns: &str, cmd: &str) -> Result<String, LabError> {
    checked(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["--", "sh", "-c", cmd]),
        DEFAULT_TIMEOUT,
    )
}

/// frr.conf for one node, laid out as Proxmox's EVPN zone writes it: a
/// peer group `VTEP` in the zone's AS, activated for L2VPN EVPN with
/// `advertise-all-vni` (a route reflector's peers are its clients).
fn config(asn: u32, router_id: Ipv4Addr, role: Role<'_>, log: &Path) -> String {
    let (peers, reflector) = match role {
        Role::Reflector(clients) => (clients, true),
        Role::Client(reflectors) => (reflectors, false),
    };
    let mut conf = format!(
        "frr defaults datacenter\nhostname vlt-frr-{router_id}\nlog file {log}\n!\n\
         router bgp {asn}\n bgp router-id {router_id}\n no bgp default ipv4-unicast\n\
         \x20coalesce-time 1000\n neighbor VTEP peer-group\n neighbor VTEP remote-as {asn}\n",
        log = log.display()
    );
    for peer in peers {
        let _ = writeln!(conf, " neighbor {peer} peer-group VTEP");
    }
    conf.push_str(" !\n address-family l2vpn evpn\n  neighbor VTEP activate\n");
    if reflector {
        conf.push_str("  neighbor VTEP route-reflector-client\n");
    }
    conf.push_str("  advertise-all-vni\n exit-address-family\nexit\n");
    conf
}

/// Adds `vxlan<vni>` (local `local`, UDP 4789) to `bridge` in namespace
/// `ns` (by name) as Proxmox's EVPN zone does: no learning on the device
/// or its bridge port, ARP/ND suppression on; zebra fills its FDB.
pub fn add_vxlan(ns: &str, vni: u32, bridge: &str, local: Ipv4Addr) -> Result<(), LabError> {
    sh_in(
        ns,
        &format!(
            "ip link add vxlan{vni} type vxlan id {vni} local {local} dstport 4789 nolearning \
             && ip link set vxlan{vni} master {bridge} \
             && bridge link set dev vxlan{vni} learning off neigh_suppress on \
             && ip link set vxlan{vni} up"
        ),
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reflector_lists_its_clients_as_such_and_a_client_its_reflectors() {
        let me = Ipv4Addr::new(198, 18, 0, 9);
        let peers = [Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 3)];
        for (role, reflector) in [
            (Role::Reflector(&peers), true),
            (Role::Client(&peers), false),
        ] {
            let conf = config(65000, me, role, Path::new("/tmp/x.log"));
            assert!(
                conf.contains("router bgp 65000\n bgp router-id 198.18.0.9\n"),
                "{conf}"
            );
            for p in peers {
                let line = format!(" neighbor {p} peer-group VTEP\n");
                assert!(conf.contains(&line), "{conf}");
            }
            let rr = conf.contains("  neighbor VTEP route-reflector-client\n");
            assert_eq!(rr, reflector, "{conf}");
            assert!(conf.contains("  advertise-all-vni\n"), "{conf}");
        }
    }
}
