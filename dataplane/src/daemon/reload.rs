//! Reload (`systemctl reload vlnet`, SIGHUP, `vlnet ctl reload`): the config
//! file is read again and the difference applied by a convergence — peers,
//! static FDB entries, VNIs, bridges, TTL/DSCP, flow tracking, FDB
//! capacities, open ports — while untouched VNIs keep forwarding (their map
//! entries are rewritten with the same values, their links kept). What a
//! running daemon cannot change (its identity, paths, listeners, underlay,
//! data path, the control plane's settings) refuses the reload with nothing
//! changed; so does a config the daemon would not start with, with the same
//! message.

use std::collections::{BTreeMap, BTreeSet};

use super::DaemonError;
use crate::api::ErrorKind;
use crate::config::{Config, ConfigError, VniConfig, WireguardConfig};

/// Why a reload changed nothing (or went back to the previous config).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config does not read or would not start a daemon.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new config changes what needs a restart.
    #[error(
        "{} changed; a running daemon cannot apply that: restart it (systemctl restart vlnet); \
         nothing was changed",
        .0.join(", ")
    )]
    NeedsRestart(Vec<&'static str>),
    /// Applying the new config failed; the previous one was applied again.
    #[error("applying the new config failed ({0}); the previous one is back")]
    RolledBack(#[source] Box<DaemonError>),
    /// Applying the new config failed, and so did applying the previous one.
    #[error("applying the new config failed ({new}), and so did going back ({back})")]
    Failed {
        /// Why the new config could not be applied.
        new: Box<DaemonError>,
        /// Why the previous one could not be applied again.
        back: Box<DaemonError>,
    },
}

impl ReloadError {
    /// The kind the admin API answers with.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) | Self::NeedsRestart(_) => ErrorKind::Invalid,
            Self::RolledBack(_) | Self::Failed { .. } => ErrorKind::Failed,
        }
    }
}

/// Keys whose change needs a restart, as the config file names them.
#[must_use]
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&old.node, &new.node);
    let mut keys = Vec::new();
    for (key, changed) in [
        ("node.name", a.name != b.name),
        ("node.underlay", a.underlay != b.underlay),
        ("node.vtep", a.vtep != b.vtep),
        ("node.state_dir", a.state_dir != b.state_dir),
        ("node.api_socket", a.api_socket != b.api_socket),
        ("node.metrics_listen", a.metrics_listen != b.metrics_listen),
        ("node.datapath", a.datapath != b.datapath),
        (
            "node.fdb_ageing_secs",
            a.fdb_ageing_secs != b.fdb_ageing_secs,
        ),
        (
            "[wireguard] (all but open_ports)",
            control_settings(old.wireguard.as_ref()) != control_settings(new.wireguard.as_ref()),
        ),
        ("[evpn]", old.evpn != new.evpn),
        (
            "[[vni]] evpn, rd, route_targets",
            evpn_vnis(old) != evpn_vnis(new),
        ),
    ] {
        if changed {
            keys.push(key);
        }
    }
    keys
}

/// The EVPN VNIs with their route distinguishers and targets (the EVPN
/// agent reads them once, at start).
fn evpn_vnis(cfg: &Config) -> Vec<(u32, Option<crate::config::Rd>, Vec<crate::config::Rt>)> {
    cfg.vni
        .iter()
        .filter(|v| v.evpn)
        .map(|v| (v.id, v.rd, v.route_targets.clone()))
        .collect()
}

/// A `[wireguard]` section without what a reload applies (open ports).
fn control_settings(wg: Option<&WireguardConfig>) -> Option<WireguardConfig> {
    wg.map(|wg| WireguardConfig {
        open_ports: Vec::new(),
        ..wg.clone()
    })
}

/// What a reload from `old` to `new` changes, one line each, in words.
#[must_use]
pub fn changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let (a, b) = (&old.node, &new.node);
    if a.ttl != b.ttl {
        out.push(format!("node.ttl {} -> {}", a.ttl, b.ttl));
    }
    if a.dscp != b.dscp {
        out.push(format!("node.dscp {:?} -> {:?}", a.dscp, b.dscp));
    }
    if a.flow_tracking != b.flow_tracking {
        out.push(format!(
            "node.flow_tracking {} -> {}",
            a.flow_tracking, b.flow_tracking
        ));
    }
    if a.fdb_max_per_vni != b.fdb_max_per_vni {
        out.push(format!(
            "node.fdb_max_per_vni {} -> {}",
            a.fdb_max_per_vni, b.fdb_max_per_vni
        ));
    }
    let ports = |c: &Config| c.wireguard.as_ref().map(WireguardConfig::open_port_set);
    if ports(old) != ports(new) {
        out.push("[wireguard] open_ports changed".to_owned());
    }
    let by_id = |c: &Config| -> BTreeMap<u32, VniConfig> {
        c.vni.iter().map(|v| (v.id, v.clone())).collect()
    };
    let (before, after) = (by_id(old), by_id(new));
    for (id, v) in &after {
        match before.get(id) {
            None => out.push(format!(
                "VNI {id} added (bridge {}, {} peers)",
                v.bridge,
                v.peers.len()
            )),
            Some(was) => vni_changes(*id, was, v, &mut out),
        }
    }
    for id in before.keys().filter(|id| !after.contains_key(id)) {
        out.push(format!("VNI {id} removed"));
    }
    out
}

fn vni_changes(id: u32, was: &VniConfig, now: &VniConfig, out: &mut Vec<String>) {
    if was.bridge != now.bridge {
        out.push(format!("VNI {id}: bridge {} -> {}", was.bridge, now.bridge));
    }
    let set = |v: &VniConfig| v.peers.iter().copied().collect::<BTreeSet<_>>();
    let (before, after) = (set(was), set(now));
    for peer in after.difference(&before) {
        out.push(format!("VNI {id}: peer {peer} added"));
    }
    for peer in before.difference(&after) {
        out.push(format!("VNI {id}: peer {peer} removed"));
    }
    if was.static_fdb != now.static_fdb {
        out.push(format!(
            "VNI {id}: static FDB {} -> {} entries",
            was.static_fdb.len(),
            now.static_fdb.len()
        ));
    }
    if was.arp_suppress != now.arp_suppress {
        out.push(format!(
            "VNI {id}: arp_suppress {:?} -> {:?}",
            was.arp_suppress, now.arp_suppress
        ));
    }
    if was.bypass != now.bypass {
        out.push(format!("VNI {id}: bypass {} -> {}", was.bypass, now.bypass));
    }
    if was.fdb_max != now.fdb_max {
        out.push(format!(
            "VNI {id}: fdb_max {:?} -> {:?}",
            was.fdb_max, now.fdb_max
        ));
    }
}

/// The VNIs `old` serves that `new` does not: their overlay ports go.
#[must_use]
pub fn removed_vnis(old: &Config, new: &Config) -> Vec<u32> {
    old.vni
        .iter()
        .map(|v| v.id)
        .filter(|id| !new.vni.iter().any(|v| v.id == *id))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(extra_node: &str, vnis: &str, wireguard: &str) -> Config {
        let text = format!(
            "[node]\nname = \"pve1\"\nunderlay = \"eth0\"\n{extra_node}\n{vnis}\n{wireguard}"
        );
        Config::parse(&text, Path::new("t")).unwrap()
    }

    const VNIS: &str = "[[vni]]\nid = 100\nbridge = \"vnet100\"\npeers = [\"198.18.0.2\"]\n\
                        [[vni]]\nid = 200\nbridge = \"vnet200\"\n";

    #[test]
    fn peers_vnis_and_outer_header_apply_live() {
        let old = config("", VNIS, "");
        let new = config(
            "ttl = 32\nflow_tracking = false",
            "[[vni]]\nid = 100\nbridge = \"vnet100\"\npeers = [\"198.18.0.2\", \"198.18.0.3\"]\n\
             [[vni]]\nid = 300\nbridge = \"vnet300\"\n",
            "",
        );
        assert!(needs_restart(&old, &new).is_empty());
        assert_eq!(
            changes(&old, &new),
            [
                "node.ttl 64 -> 32",
                "node.flow_tracking true -> false",
                "VNI 100: peer 198.18.0.3 added",
                "VNI 300 added (bridge vnet300, 0 peers)",
                "VNI 200 removed",
            ]
        );
        assert_eq!(removed_vnis(&old, &new), [200]);
        assert!(changes(&old, &old).is_empty());
    }

    #[test]
    fn identity_paths_and_control_settings_need_a_restart() {
        let old = config("", VNIS, "[wireguard]\nrole = \"member\"\n");
        let mut new = old.clone();
        new.node.underlay = "eth1".into();
        new.node.datapath = crate::config::DatapathSetting::Xdp;
        if let Some(wg) = new.wireguard.as_mut() {
            wg.listen_port = 51999;
        }
        assert_eq!(
            needs_restart(&old, &new),
            [
                "node.underlay",
                "node.datapath",
                "[wireguard] (all but open_ports)"
            ]
        );
        let ports = config(
            "",
            VNIS,
            "[wireguard]\nrole = \"member\"\nopen_ports = [\"tcp/4444\"]\n",
        );
        assert!(needs_restart(&old, &ports).is_empty());
        assert_eq!(changes(&old, &ports), ["[wireguard] open_ports changed"]);
    }
}
