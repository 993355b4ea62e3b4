//! FRR 8.4 (Debian `frr`) nodes of an EVPN zone in a test's namespaces, as
//! Proxmox's EVPN zone writes them: zebra and bgpd with a config, pid files
//! and sockets of their own, iBGP in one AS with `advertise-all-vni`, either
//! a route reflector for several clients or a client of one or two route
//! reflectors; the node's bridge holds a kernel VXLAN device that does not
//! learn (zebra installs the remote MACs and flood entries from the
//! routes). Daemons are stopped by their pids on drop. Needs
//! `/usr/lib/frr/{zebra,bgpd}` and `vtysh`.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vlnet_lab::primitives::probe;
use vlnet_lab::{Daemon, Host, NodeSpec, Underlay, Vm};

/// Where Debian installs FRR's daemons.
pub const FRR_BIN: &str = "/usr/lib/frr";

/// What an FRR node is in the zone's iBGP mesh.
#[derive(Debug, Clone, Copy)]
pub enum Role<'a> {
    /// A route reflector with these route-reflector clients.
    Reflector(&'a [Ipv4Addr]),
    /// A route-reflector client peering with these route reflectors.
    Client(&'a [Ipv4Addr]),
}

/// zebra and bgpd of one FRR node.
pub struct Frr {
    ns: String,
    dir: tempfile::TempDir,
}

impl Frr {
    /// Starts zebra and bgpd in namespace `ns` as router `router_id` of AS
    /// `asn` in `role`; waits until both answer on their vty sockets.
    pub fn start(ns: &str, asn: u32, router_id: Ipv4Addr, role: Role<'_>) -> Self {
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
            config(asn, router_id, role, &run_dir.join("frr.log")),
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

    /// Whether the session with `neighbor` is Established.
    pub fn established(&self, neighbor: Ipv4Addr) -> bool {
        self.vtysh(&format!("show bgp neighbors {neighbor}"))
            .contains("BGP state = Established")
    }

    /// `show evpn mac vni VNI mac MAC json`: the MAC as zebra holds it
    /// (`type` local or remote, `remoteVtep`, `localSequence`,
    /// `remoteSequence`), or `None` if zebra does not know it.
    pub fn evpn_mac(&self, vni: u32, mac: &str) -> Option<serde_json::Value> {
        // vtysh fails when zebra does not know the MAC.
        let out = self.sh(&format!(
            "vtysh --vty_socket {} -c 'show evpn mac vni {vni} mac {mac} json' || true",
            self.run_dir().display()
        ));
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let entry = v.get(mac).cloned().unwrap_or(v);
        entry.get("type").is_some().then_some(entry)
    }

    /// Whether zebra holds `mac` on `vni` as remote, behind `vtep`.
    pub fn holds_remote(&self, vni: u32, mac: &str, vtep: Ipv4Addr) -> bool {
        self.evpn_mac(vni, mac)
            .is_some_and(|m| m["type"] == "remote" && m["remoteVtep"] == vtep.to_string())
    }

    /// The MAC Mobility sequence number zebra holds for `mac` on `vni`, if
    /// it holds the MAC as remote behind `vtep`.
    pub fn remote_seq(&self, vni: u32, mac: &str, vtep: Ipv4Addr) -> Option<u64> {
        let m = self.evpn_mac(vni, mac)?;
        (m["type"] == "remote" && m["remoteVtep"] == vtep.to_string())
            .then(|| m["remoteSequence"].as_u64())
            .flatten()
    }

    /// Kills bgpd (SIGKILL, by its pid file): its sessions drop at once,
    /// without a NOTIFICATION, as when the process crashes. zebra stays.
    pub fn kill_bgpd(&self) {
        let pid = self.pid("bgpd").expect("bgpd is running");
        // SAFETY: signals one process this test started, by its pid.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        assert!(
            wait_for(Duration::from_secs(5), || !proc_dir.exists()),
            "bgpd {pid} did not die"
        );
    }

    /// The pid of `daemon` from its pid file, if that process is still
    /// this daemon (a pid file outlives a killed daemon).
    fn pid(&self, daemon: &str) -> Option<i32> {
        let pid = fs::read_to_string(self.run_dir().join(format!("{daemon}.pid")))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|p| *p > 1)?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        (comm.trim() == daemon).then_some(pid)
    }
}

impl Drop for Frr {
    /// SIGTERM to both daemons at once (each takes 1.5–2 s to stop), then
    /// SIGKILL to whichever is still there after 5 s.
    fn drop(&mut self) {
        let pids: Vec<i32> = ["bgpd", "zebra"]
            .into_iter()
            .filter_map(|d| self.pid(d))
            .collect();
        for &pid in &pids {
            // SAFETY: signals one process this test started, by its pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let gone = |pid: i32| !PathBuf::from(format!("/proc/{pid}")).exists();
        if !wait_for(Duration::from_secs(5), || pids.iter().all(|&p| gone(p))) {
            for &pid in pids.iter().filter(|&&p| !gone(p)) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
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
        writeln!(conf, " neighbor {peer} peer-group VTEP").unwrap();
    }
    conf.push_str(" !\n address-family l2vpn evpn\n  neighbor VTEP activate\n");
    if reflector {
        conf.push_str("  neighbor VTEP route-reflector-client\n");
    }
    conf.push_str("  advertise-all-vni\n exit-address-family\nexit\n");
    conf
}

/// Adds `vxlan<vni>` (local `local`, UDP 4789) to `bridge` in namespace
/// `ns` as Proxmox's EVPN zone does: no learning on the device or its
/// bridge port, ARP/ND suppression on; zebra fills its FDB.
pub fn add_vxlan(ns: &str, vni: u32, bridge: &str, local: Ipv4Addr) {
    super::thread_netns::sh_in(
        ns,
        &format!(
            "ip link add vxlan{vni} type vxlan id {vni} local {local} dstport 4789 nolearning \
             && ip link set vxlan{vni} master {bridge} \
             && bridge link set dev vxlan{vni} learning off neigh_suppress on \
             && ip link set vxlan{vni} up"
        ),
    );
}

/// The zone the EVPN tests build: one AS, one VNI, its bridge on every node.
#[derive(Debug, Clone, Copy)]
pub struct Zone {
    /// The AS of every node (iBGP).
    pub asn: u32,
    /// The VNI.
    pub vni: u32,
    /// Its bridge on every node.
    pub bridge: &'static str,
}

/// The zone of the EVPN tests against FRR zones: AS 65000, VNI 100 on
/// `vnet100` (Proxmox's vnet naming).
pub const VNI100: Zone = Zone {
    asn: 65000,
    vni: 100,
    bridge: "vnet100",
};

/// An FRR node of a [`Zone`]: its host (namespace, bridge, kernel VXLAN)
/// and its daemons. The daemons stop before the namespace goes.
pub struct FrrNode {
    /// zebra and bgpd.
    pub frr: Frr,
    /// The namespace on the underlay.
    pub host: Host,
}

impl std::ops::Deref for FrrNode {
    type Target = Frr;

    fn deref(&self) -> &Frr {
        &self.frr
    }
}

impl Zone {
    /// A host `label` at `ip` on `underlay` with the zone's bridge (for a
    /// vlnet node).
    pub fn host(&self, underlay: &Underlay, label: &str, ip: Ipv4Addr) -> Host {
        let host = underlay.add_host(label, ip).unwrap();
        host.add_bridge(self.bridge).unwrap();
        host
    }

    /// An FRR node `label` at `ip` (its VTEP and router id) in `role`.
    pub fn frr_node(
        &self,
        underlay: &Underlay,
        label: &str,
        ip: Ipv4Addr,
        role: Role<'_>,
    ) -> FrrNode {
        let host = self.host(underlay, label, ip);
        add_vxlan(host.ns().name(), self.vni, self.bridge, ip);
        FrrNode {
            frr: Frr::start(host.ns().name(), self.asn, ip, role),
            host,
        }
    }

    /// A VM `label` on `host`'s bridge with `mac` and `ip`/24.
    pub fn vm(&self, host: &Host, label: &str, mac: &str, ip: Ipv4Addr) -> Vm {
        host.add_vm(label, self.bridge, mac, ip, 24).unwrap()
    }

    /// A vlnet node `prefix-…` at `vtep` with the zone's VNI on its bridge,
    /// peering with `reflectors`.
    pub fn vlnet_spec(&self, prefix: &str, vtep: Ipv4Addr, reflectors: &[Ipv4Addr]) -> NodeSpec {
        NodeSpec::new(prefix, vtep)
            .with_vni(self.vni, self.bridge, &[])
            .with_evpn(self.asn, reflectors)
    }
}

/// vlnet's `ctl fdb --json`.
pub fn vlnet_fdb(daemon: &Daemon) -> serde_json::Value {
    serde_json::from_str(&daemon.ctl(&["fdb", "--json"]).unwrap()).unwrap()
}

/// Whether `vlnet ctl fdb --json` has `mac` in `vni` behind `vtep`, from
/// the control plane (an EVPN route).
pub fn vlnet_fdb_has(daemon: &Daemon, vni: u32, mac: &str, vtep: Ipv4Addr) -> bool {
    vlnet_fdb(daemon).as_array().unwrap().iter().any(|r| {
        r["mac"] == mac
            && r["vtep"] == vtep.to_string()
            && r["vni"] == vni
            && r["kind"] == "control"
    })
}

/// Pings `to` from `from` once every 200 ms until a reply comes (≤
/// `limit`): the first requests wait for ARP, flooded through the type-3
/// flood lists. Whether a reply came.
pub fn reachable(from: &Vm, to: Ipv4Addr, limit: Duration) -> bool {
    wait_for(limit, || {
        probe::ping(from.ns(), to, 1, Duration::from_millis(200)).is_ok_and(|p| p.received == 1)
    })
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

/// Polls `f` every 100 ms for `period`; whether it held every time.
pub fn holds_for(period: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        if !f() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}
