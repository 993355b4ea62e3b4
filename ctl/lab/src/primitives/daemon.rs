//! Running vlnet nodes in a lab: [`NodeSpec`] describes one and renders its
//! TOML config (DESIGN "Interfaces users rely on"); [`Daemon`] runs
//! `vlnet daemon --config FILE` inside a host namespace and cleans up after it.
//!
//! Each daemon gets a private directory `<tmp>/vlt-<node>/` holding its
//! config, state dir, API socket and log. Its BPF objects are pinned under
//! `/sys/fs/bpf/vlnet/<node>/`, so node names are unique per process and run
//! ([`NodeSpec::new`] appends pid and counter), and dropping a [`Daemon`] runs
//! `vlnet ctl --config FILE teardown` to unpin them.

use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::primitives::netns::{
    checked, checked_with_input, unique_ifname, unique_suffix, ChildGuard, LabError, NetNs,
};
use crate::primitives::tempdir::TempDir;
use crate::primitives::topology::UNDERLAY_IF;

/// Default Prometheus port inside the host namespace.
pub const DEFAULT_METRICS_PORT: u16 = 9469;
/// How long [`Daemon::start`] and [`Daemon::restart`] wait for readiness.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit for one `vlnet ctl` call.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(10);
/// Where vlnet pins a node's objects: `<BPFFS_PIN_ROOT>/<node>/`.
pub const BPFFS_PIN_ROOT: &str = "/sys/fs/bpf/vlnet";
/// Lines of the daemon log quoted in errors.
const LOG_TAIL_LINES: usize = 40;
/// Longest Unix socket path (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The node's `datapath` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Datapath {
    /// TC on veth and drivers without native XDP, XDP elsewhere.
    #[default]
    Auto,
    /// TC decap on the underlay.
    Tc,
    /// XDP decap on the underlay.
    Xdp,
}

/// How the lab starts `vlnet daemon` in its host namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Launch {
    /// `nsenter --net=…`: the host's mount namespace (what systemd does).
    #[default]
    Nsenter,
    /// `ip netns exec …`: a private mount namespace without the host's BPF
    /// filesystem at `/sys/fs/bpf`.
    IpNetnsExec,
}

/// One `[[vni]]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniSpec {
    /// The VXLAN network identifier.
    pub id: u32,
    /// Local bridge the overlay port joins.
    pub bridge: String,
    /// Static remote VTEPs.
    pub peers: Vec<Ipv4Addr>,
    /// `bypass = true`: the bridge bypass.
    pub bypass: bool,
    /// `evpn = true`: EVPN-controlled (the node needs an `[evpn]` section).
    pub evpn: bool,
}

/// A node's `[evpn]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvpnSpec {
    /// The AS number (iBGP with the neighbors).
    pub asn: u32,
    /// The route reflectors, `"198.18.0.2"` or `"198.18.0.2:179"`.
    pub neighbors: Vec<String>,
    /// The hold time proposed, seconds.
    pub hold_time: u16,
    /// On a gateway, networks in which a member's own address is its MACs'
    /// next hop.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub direct: Vec<String>,
}

/// A node's `[wireguard]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireguardSpec {
    /// `controller` or `member`.
    pub role: &'static str,
    /// WireGuard interface, unique on the machine.
    pub ifname: String,
    /// UDP port (0: any).
    pub listen_port: u16,
    /// Controller: tunnel address and pool, e.g. `198.19.0.1/24`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Controller: endpoint written into tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Keepalive seconds.
    pub keepalive_secs: u16,
    /// Controller: members one VNI may have (the daemon's default if `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_members_per_vni: Option<u32>,
}

impl WireguardSpec {
    fn new(role: &'static str) -> Self {
        Self {
            role,
            ifname: unique_ifname("vw"),
            listen_port: 51820,
            address: None,
            endpoint: None,
            keepalive_secs: 1,
            max_members_per_vni: None,
        }
    }
}

/// A vlnet node to run in a lab host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Node name; also names the pin directory, so keep it unique.
    pub name: String,
    /// Underlay interface in the host namespace.
    pub underlay: String,
    /// Local VTEP address.
    pub vtep: Ipv4Addr,
    /// The VNIs this node serves.
    pub vnis: Vec<VniSpec>,
    /// Decap data path.
    pub datapath: Datapath,
    /// `metrics_listen` is `127.0.0.1:<metrics_port>` in the host namespace.
    pub metrics_port: u16,
    /// `fdb_ageing_secs`; the daemon's default when `None`.
    pub fdb_ageing_secs: Option<u64>,
    /// `[wireguard]`, if any.
    pub wireguard: Option<WireguardSpec>,
    /// `flow_tracking` (the daemon's default, on, when true).
    pub flow_tracking: bool,
    /// `[wireguard] open_ports`: host ports members may reach through the
    /// tunnel, e.g. `"tcp/4444"` (needs a `[wireguard]` section).
    pub open_ports: Vec<String>,
    /// `[evpn]`, if any.
    pub evpn: Option<EvpnSpec>,
}

impl NodeSpec {
    /// A node `<prefix>-<pid>-<n>` on [`UNDERLAY_IF`] with VTEP `vtep`, no
    /// VNIs yet, datapath `tc`, metrics on [`DEFAULT_METRICS_PORT`].
    #[must_use]
    pub fn new(prefix: &str, vtep: Ipv4Addr) -> Self {
        Self {
            name: format!("{prefix}-{}", unique_suffix()),
            underlay: UNDERLAY_IF.to_owned(),
            vtep,
            vnis: Vec::new(),
            datapath: Datapath::Tc,
            metrics_port: DEFAULT_METRICS_PORT,
            fdb_ageing_secs: None,
            wireguard: None,
            flow_tracking: true,
            open_ports: Vec::new(),
            evpn: None,
        }
    }

    /// Makes the node a controller with tunnel address and pool `address`
    /// (e.g. `198.19.0.1/24`); members reach its WireGuard port on its VTEP.
    /// Keepalives every second, so the lab notices a cut WAN at once.
    #[must_use]
    pub fn as_controller(mut self, address: &str) -> Self {
        let mut wg = WireguardSpec::new("controller");
        wg.address = Some(address.to_owned());
        wg.endpoint = Some(format!("{}:{}", self.vtep, wg.listen_port));
        self.wireguard = Some(wg);
        self
    }

    /// A controller's `max_members_per_vni` (after [`as_controller`](Self::as_controller)).
    #[must_use]
    pub fn with_member_limit(mut self, limit: u32) -> Self {
        if let Some(wg) = &mut self.wireguard {
            wg.max_members_per_vni = Some(limit);
        }
        self
    }

    /// Makes the node a member (it joins with `vlnet ctl join`, see [`Daemon::join`]).
    #[must_use]
    pub fn as_member(mut self) -> Self {
        self.wireguard = Some(WireguardSpec::new("member"));
        self
    }

    /// Adds a `[[vni]]`.
    #[must_use]
    pub fn with_vni(mut self, id: u32, bridge: &str, peers: &[Ipv4Addr]) -> Self {
        self.vnis.push(VniSpec {
            id,
            bridge: bridge.to_owned(),
            peers: peers.to_vec(),
            bypass: false,
            evpn: false,
        });
        self
    }

    /// An `[evpn]` section peering with `neighbors` in AS `asn` (hold time
    /// 9 s, so a dead peer shows soon), every VNI added so far marked
    /// `evpn = true` (they must have no static peers).
    #[must_use]
    pub fn with_evpn(mut self, asn: u32, neighbors: &[Ipv4Addr]) -> Self {
        for v in &mut self.vnis {
            v.evpn = true;
        }
        self.evpn = Some(EvpnSpec {
            asn,
            neighbors: neighbors.iter().map(ToString::to_string).collect(),
            hold_time: 9,
            direct: Vec::new(),
        });
        self
    }

    /// Sets `[evpn] direct` (after [`with_evpn`](Self::with_evpn); without
    /// it, nothing).
    #[must_use]
    pub fn with_evpn_direct(mut self, networks: &[String]) -> Self {
        if let Some(evpn) = &mut self.evpn {
            evpn.direct = networks.to_vec();
        }
        self
    }

    /// Turns the bridge bypass on or off for every VNI added so far.
    #[must_use]
    pub fn with_bypass(mut self, on: bool) -> Self {
        for v in &mut self.vnis {
            v.bypass = on;
        }
        self
    }

    /// Sets how long learned MACs live without traffic.
    #[must_use]
    pub fn with_fdb_ageing(mut self, secs: u64) -> Self {
        self.fdb_ageing_secs = Some(secs);
        self
    }

    /// A member `[wireguard]` section naming an interface the caller made
    /// (no join: VXLAN through it is decapsulated, peers are static).
    #[must_use]
    pub fn with_wireguard(mut self, ifname: &str) -> Self {
        let mut wg = WireguardSpec::new("member");
        ifname.clone_into(&mut wg.ifname);
        self.wireguard = Some(wg);
        self
    }

    /// Opens host ports to members through the tunnel (`[wireguard]
    /// open_ports`, e.g. `["tcp/4444"]`): everything else from members to
    /// the node is dropped. The node needs a `[wireguard]` section.
    #[must_use]
    pub fn with_open_ports(mut self, ports: &[&str]) -> Self {
        self.open_ports
            .extend(ports.iter().map(|p| (*p).to_owned()));
        self
    }

    /// Turns the kernel's flow tracking on or off.
    #[must_use]
    pub fn with_flow_tracking(mut self, on: bool) -> Self {
        self.flow_tracking = on;
        self
    }

    /// Sets the data path.
    #[must_use]
    pub fn with_datapath(mut self, datapath: Datapath) -> Self {
        self.datapath = datapath;
        self
    }

    /// The config file text with state dir and API socket inside `dir`.
    pub fn to_toml(&self, dir: &Path) -> Result<String, LabError> {
        #[derive(Serialize)]
        struct File<'a> {
            node: Node<'a>,
            vni: Vec<Vni<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            wireguard: Option<Wireguard<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            evpn: Option<&'a EvpnSpec>,
        }
        #[derive(Serialize)]
        struct Wireguard<'a> {
            #[serde(flatten)]
            spec: &'a WireguardSpec,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            open_ports: &'a [String],
        }
        #[derive(Serialize)]
        struct Node<'a> {
            name: &'a str,
            underlay: &'a str,
            vtep: String,
            state_dir: String,
            api_socket: String,
            metrics_listen: String,
            datapath: Datapath,
            #[serde(skip_serializing_if = "Option::is_none")]
            fdb_ageing_secs: Option<u64>,
            flow_tracking: bool,
        }
        #[derive(Serialize)]
        struct Vni<'a> {
            id: u32,
            bridge: &'a str,
            peers: Vec<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            bypass: Option<bool>,
            #[serde(skip_serializing_if = "Option::is_none")]
            evpn: Option<bool>,
        }
        if !self.open_ports.is_empty() && self.wireguard.is_none() {
            return Err(LabError::Invalid(format!(
                "node {}: open ports {:?} need a [wireguard] section (as_controller, \
                 as_member or with_wireguard)",
                self.name, self.open_ports
            )));
        }
        let file = File {
            node: Node {
                name: &self.name,
                underlay: &self.underlay,
                vtep: self.vtep.to_string(),
                state_dir: path_str(&dir.join("state"))?,
                api_socket: path_str(&socket_path(dir))?,
                metrics_listen: format!("127.0.0.1:{}", self.metrics_port),
                datapath: self.datapath,
                fdb_ageing_secs: self.fdb_ageing_secs,
                flow_tracking: self.flow_tracking,
            },
            vni: self
                .vnis
                .iter()
                .map(|v| Vni {
                    id: v.id,
                    bridge: &v.bridge,
                    peers: v.peers.iter().map(ToString::to_string).collect(),
                    bypass: v.bypass.then_some(true),
                    evpn: v.evpn.then_some(true),
                })
                .collect(),
            wireguard: self.wireguard.as_ref().map(|spec| Wireguard {
                spec,
                open_ports: &self.open_ports,
            }),
            evpn: self.evpn.as_ref(),
        };
        toml::to_string(&file).map_err(|e| LabError::Invalid(format!("node config: {e}")))
    }
}

fn socket_path(dir: &Path) -> PathBuf {
    dir.join("api.sock")
}

fn path_str(p: &Path) -> Result<String, LabError> {
    p.to_str()
        .map(ToOwned::to_owned)
        .ok_or_else(|| LabError::Invalid(format!("path {} is not UTF-8", p.display())))
}

/// Mounts bpffs at `/sys/fs/bpf` unless it already is.
pub fn ensure_bpffs() -> Result<(), LabError> {
    let mounts = std::fs::read_to_string("/proc/mounts")
        .map_err(|e| LabError::io("reading /proc/mounts", e))?;
    let mounted = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        matches!(
            (f.next(), f.next(), f.next()),
            (_, Some("/sys/fs/bpf"), Some("bpf"))
        )
    });
    if !mounted {
        crate::primitives::netns::run_host(&["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"])?;
    }
    Ok(())
}

/// A `vlnet daemon` running in a host namespace.
///
/// Dropping it kills the daemon (SIGKILL), runs `vlnet ctl --config FILE
/// teardown` (errors ignored) so the node's pinned objects go, and removes its
/// directory. If the thread is panicking the log's tail is printed first.
#[derive(Debug)]
pub struct Daemon {
    ns: NetNs,
    spec: NodeSpec,
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<ChildGuard>,
    launch: Launch,
    env: Vec<(String, String)>,
    dir: TempDir,
}

impl Daemon {
    /// Writes the config for `spec` into a fresh directory, starts
    /// `vlnet daemon --config FILE` in `host_ns` (output to `daemon.log`
    /// there) and waits up to [`READY_TIMEOUT`] for `vlnet ctl status --json`
    /// to succeed.
    pub fn start(host_ns: &NetNs, spec: NodeSpec, vlnet_binary: &Path) -> Result<Self, LabError> {
        Self::start_with(host_ns, spec, vlnet_binary, Launch::Nsenter)
    }

    /// [`start`](Self::start), started (and restarted) as `launch` says.
    pub fn start_with(
        host_ns: &NetNs,
        spec: NodeSpec,
        vlnet_binary: &Path,
        launch: Launch,
    ) -> Result<Self, LabError> {
        ensure_bpffs()?;
        let dir = TempDir::at(std::env::temp_dir().join(format!("vlt-{}", spec.name)))?;
        let socket = socket_path(dir.path());
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(LabError::Invalid(format!(
                "API socket path {} is longer than {MAX_SOCKET_PATH} bytes; shorten the node name or TMPDIR",
                socket.display()
            )));
        }
        let config = dir.path().join("vlnet.toml");
        std::fs::write(&config, spec.to_toml(dir.path())?)
            .map_err(|e| LabError::io(format!("writing {}", config.display()), e))?;
        // Private, as systemd's StateDirectoryMode makes it (a looser one
        // would be tightened by the daemon, with a warning).
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.path().join("state"))
            .map_err(|e| LabError::io("creating the state dir", e))?;
        let mut daemon = Self {
            ns: host_ns.clone(),
            log: dir.path().join("daemon.log"),
            spec,
            binary: vlnet_binary.to_owned(),
            config,
            child: None,
            launch,
            env: Vec::new(),
            dir,
        };
        daemon.spawn()?;
        daemon.wait_ready(READY_TIMEOUT)?;
        Ok(daemon)
    }

    fn spawn(&mut self) -> Result<(), LabError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| LabError::io(format!("opening {}", self.log.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| LabError::io("duplicating the log handle", e))?;
        let mut cmd = match self.launch {
            Launch::Nsenter => self.ns.cmd(&self.binary),
            Launch::IpNetnsExec => self.ns.ip_netns_exec(&self.binary),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("daemon")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        self.child = Some(ChildGuard::spawn(&mut cmd)?);
        Ok(())
    }

    /// Polls `vlnet ctl status --json` until it succeeds, the daemon exits, or
    /// `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), LabError> {
        let start = Instant::now();
        let reason = loop {
            if let Some(status) = self.exited()? {
                break format!("daemon exited: {status}");
            }
            let Err(err) = self.ctl_within(&["status", "--json"], Duration::from_secs(2)) else {
                return Ok(());
            };
            if start.elapsed() >= timeout {
                break err.to_string();
            }
            thread::sleep(Duration::from_millis(100));
        };
        Err(LabError::NotReady {
            node: self.spec.name.clone(),
            waited: start.elapsed(),
            reason,
            log_tail: self.log_tail(LOG_TAIL_LINES),
        })
    }

    fn exited(&mut self) -> Result<Option<ExitStatus>, LabError> {
        match &mut self.child {
            Some(c) => c.try_wait(),
            None => Ok(None),
        }
    }

    /// The node name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The spec it was started with.
    #[must_use]
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// The namespace it runs in.
    #[must_use]
    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// Its config file.
    #[must_use]
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Its private directory (config, `state/`, `api.sock`, `daemon.log`).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its admin API socket.
    #[must_use]
    pub fn api_socket(&self) -> PathBuf {
        socket_path(self.dir.path())
    }

    /// `http://127.0.0.1:<port>/metrics`, reachable from inside its namespace.
    #[must_use]
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.spec.metrics_port)
    }

    /// Where its BPF objects are pinned.
    #[must_use]
    pub fn pin_dir(&self) -> PathBuf {
        Path::new(BPFFS_PIN_ROOT).join(&self.spec.name)
    }

    /// The daemon's pid, if running.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::id)
    }

    /// SIGKILLs the daemon (no cleanup by it: pinned programs keep forwarding).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// SIGTERMs the daemon and waits up to `timeout` for it to exit; returns
    /// its exit status, or `None` if it did not exit (it is then still running).
    pub fn terminate(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, LabError> {
        let Some(child) = &mut self.child else {
            return Ok(None);
        };
        checked(
            std::process::Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string()),
            CTL_TIMEOUT,
        )?;
        let status = child.wait_within(timeout)?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Sets environment variable `key` for the daemon's next start (e.g.
    /// `NOTIFY_SOCKET`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Writes `spec`'s config over the daemon's config file (a reload or
    /// restart picks it up). The node name must stay.
    pub fn rewrite_config(&mut self, spec: NodeSpec) -> Result<(), LabError> {
        if spec.name != self.spec.name {
            return Err(LabError::Invalid(format!(
                "node {} cannot become {}",
                self.spec.name, spec.name
            )));
        }
        std::fs::write(&self.config, spec.to_toml(self.dir.path())?)
            .map_err(|e| LabError::io(format!("writing {}", self.config.display()), e))?;
        self.spec = spec;
        Ok(())
    }

    /// Kills the daemon if running, starts it again with the same config and
    /// waits for readiness.
    pub fn restart(&mut self) -> Result<(), LabError> {
        self.kill9();
        self.spawn()?;
        self.wait_ready(READY_TIMEOUT)
    }

    /// Runs `vlnet ctl --config FILE ARGS…` in the namespace; returns stdout.
    pub fn ctl(&self, args: &[&str]) -> Result<String, LabError> {
        self.ctl_within(args, CTL_TIMEOUT)
    }

    fn ctl_within(&self, args: &[&str], timeout: Duration) -> Result<String, LabError> {
        self.ctl_with_input(args, None, timeout)
    }

    fn ctl_with_input(
        &self,
        args: &[&str],
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<String, LabError> {
        let mut cmd = self.ns.cmd(&self.binary);
        cmd.arg("ctl").arg("--config").arg(&self.config).args(args);
        checked_with_input(&mut cmd, input, timeout)
    }

    /// `vlnet ctl join -` with `token` on standard input, as the README
    /// shows (an argument would be visible in `/proc/*/cmdline`); returns
    /// stdout.
    pub fn join(&self, token: &str) -> Result<String, LabError> {
        self.ctl_with_input(&["join", "-"], Some(token.as_bytes()), CTL_TIMEOUT)
    }

    /// `vlnet ctl status --json`, parsed.
    pub fn status_json(&self) -> Result<serde_json::Value, LabError> {
        let out = self.ctl(&["status", "--json"])?;
        serde_json::from_str(&out).map_err(|e| LabError::Parse {
            what: "vlnet ctl status --json".into(),
            detail: format!("{e}: {out:.200}"),
        })
    }

    /// The daemon's log so far (stdout and stderr, all runs).
    #[must_use]
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = std::io::Read::read_to_string(&mut f, &mut text);
        }
        text
    }

    /// The last `lines` lines of [`log`](Self::log).
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        last_lines(&self.log(), lines)
    }
}

/// The last `n` lines of `text` (a log's tail, for a failure message).
#[must_use]
pub fn last_lines(text: &str, n: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].join("\n")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- vlnet node {} log ({}) ---\n{}",
                self.spec.name,
                self.log.display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        self.kill9();
        if let Err(e) = self.ctl(&["teardown"]) {
            eprintln!("lab: teardown of node {} failed: {e}", self.spec.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_config() {
        let spec = NodeSpec {
            name: "pve1-1-0".into(),
            underlay: "ul0".into(),
            vtep: Ipv4Addr::new(198, 18, 0, 1),
            vnis: Vec::new(),
            datapath: Datapath::Xdp,
            metrics_port: 9469,
            fdb_ageing_secs: None,
            wireguard: None,
            flow_tracking: false,
            open_ports: Vec::new(),
            evpn: None,
        }
        .with_vni(100, "vnet100", &[Ipv4Addr::new(198, 18, 0, 2)])
        .with_vni(200, "vnet200", &[])
        .as_controller("198.19.0.1/24")
        .with_open_ports(&["tcp/4444", "udp/5000-5001"]);
        let text = spec.to_toml(Path::new("/tmp/vlt-pve1")).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        let node = &v["node"];
        assert_eq!(node["name"].as_str(), Some("pve1-1-0"));
        assert_eq!(node["underlay"].as_str(), Some("ul0"));
        assert_eq!(node["flow_tracking"].as_bool(), Some(false));
        assert_eq!(node["vtep"].as_str(), Some("198.18.0.1"));
        assert_eq!(node["state_dir"].as_str(), Some("/tmp/vlt-pve1/state"));
        assert_eq!(node["api_socket"].as_str(), Some("/tmp/vlt-pve1/api.sock"));
        assert_eq!(node["metrics_listen"].as_str(), Some("127.0.0.1:9469"));
        assert_eq!(node["datapath"].as_str(), Some("xdp"));
        let vnis = v["vni"].as_array().unwrap();
        assert_eq!(vnis.len(), 2);
        assert_eq!(vnis[0]["id"].as_integer(), Some(100));
        assert_eq!(vnis[0]["bridge"].as_str(), Some("vnet100"));
        assert_eq!(
            vnis[0]["peers"].as_array().unwrap()[0].as_str(),
            Some("198.18.0.2")
        );
        assert!(text.contains("[[vni]]"), "{text}");
        assert!(vnis[0].get("bypass").is_none(), "off unless asked for");
        assert!(vnis[0].get("evpn").is_none(), "off unless asked for");
        assert!(v.get("evpn").is_none());
        let evpn: toml::Value = toml::from_str(
            &spec
                .clone()
                .with_evpn(65000, &[Ipv4Addr::new(198, 18, 0, 9)])
                .to_toml(Path::new("/tmp/vlt-pve1"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(evpn["evpn"]["asn"].as_integer(), Some(65000));
        assert_eq!(evpn["evpn"]["neighbors"][0].as_str(), Some("198.18.0.9"));
        assert_eq!(evpn["vni"][1]["evpn"].as_bool(), Some(true));
        let bypass = spec
            .clone()
            .with_bypass(true)
            .to_toml(Path::new("/tmp/x"))
            .unwrap();
        let on: toml::Value = toml::from_str(&bypass).unwrap();
        assert_eq!(on["vni"][1]["bypass"].as_bool(), Some(true));
        let wg = &v["wireguard"];
        assert_eq!(wg["role"].as_str(), Some("controller"));
        assert_eq!(wg["address"].as_str(), Some("198.19.0.1/24"));
        assert_eq!(wg["endpoint"].as_str(), Some("198.18.0.1:51820"));
        assert!(wg["ifname"].as_str().unwrap().len() <= 15);
        let open: Vec<&str> = wg["open_ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(open, ["tcp/4444", "udp/5000-5001"]);
        // The daemon accepts what the lab writes.
        let cfg = vlnet_dataplane::config::Config::parse(&text, Path::new("t")).unwrap();
        assert_eq!(cfg.wireguard.unwrap().open_ports.len(), 2);
    }

    #[test]
    fn open_ports_need_a_wireguard_section() {
        let spec = NodeSpec::new("n", Ipv4Addr::new(198, 18, 0, 1))
            .with_vni(100, "vnet100", &[])
            .with_open_ports(&["tcp/4444"]);
        let err = spec.to_toml(Path::new("/tmp/x")).unwrap_err().to_string();
        assert!(err.contains("[wireguard]"), "{err}");
        let member = NodeSpec::new("n", Ipv4Addr::new(198, 18, 0, 1)).as_member();
        let text = member.to_toml(Path::new("/tmp/x")).unwrap();
        assert!(!text.contains("open_ports"), "{text}");
    }

    #[test]
    fn node_names_are_unique() {
        let ip = Ipv4Addr::new(198, 18, 0, 1);
        assert_ne!(NodeSpec::new("n", ip).name, NodeSpec::new("n", ip).name);
    }
}
