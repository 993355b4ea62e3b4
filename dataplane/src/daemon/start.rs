//! Start-up, up to the moment the node is ready: the programs and maps
//! loaded (or adopted from a previous daemon), the control plane's tunnel
//! and persisted state, the first convergence, the admin API and `/metrics`
//! bound; then readiness, announced once the API answers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use aya::maps::{MapData, RingBuf};
use tokio::net::{TcpListener, UnixListener};
use tracing::info;
use vlnet_ebpf::abi::VLNET_ENCAP_LEN;

use super::converge::{converge, fdb_capacities, Bridges, Dataplane};
use super::links::Expected;
use super::DaemonError;
use crate::api::{self, ApiError};
use crate::bpf::{self, Programs};
use crate::config::{Config, DatapathSetting};
use crate::control::{ControlPlane, DataplaneHooks, Dynamic};
use crate::evpn::restart::Kept;
use crate::maps::Maps;
use crate::metrics;
use crate::model::{DatapathMode, LinkAction};
use crate::netlink::{self, LinkSummary, Netlink};
use crate::node::{Node, NodeFacts};
use crate::notify;

/// What start-up hands to the daemon's tasks.
pub struct Started {
    /// The running node.
    pub node: Arc<Node>,
    /// The programs, maps and links (the convergence task's from now on).
    pub dataplane: Dataplane,
    /// The control plane, if the node has a `[wireguard]` section.
    pub plane: Option<Arc<ControlPlane>>,
    /// What the first convergence set up, for the link watcher.
    pub expected: Expected,
    /// The ring buffer the programs report MAC moves through.
    pub events: RingBuf<MapData>,
    /// The admin API's socket, bound.
    pub api: UnixListener,
    /// `/metrics`'s socket, bound.
    pub metrics: TcpListener,
    /// After a restart: the data plane's EVPN state, kept for the agent.
    pub evpn_kept: Option<Kept>,
}

/// Loads the programs and maps, starts the control plane, converges once
/// (the programs attached) and binds the admin API and `/metrics`.
pub async fn start(cfg: &Config) -> Result<Started, DaemonError> {
    notify::tell("STATUS=loading the programs and maps");
    let (node, mut dataplane) = load_dataplane(cfg).await?;
    let plane = start_control_plane(cfg, &node).await?;
    let mut dynamic = plane
        .as_ref()
        .map_or_else(Dynamic::default, |p| p.dynamic());
    // Read before the first convergence, which would drop it otherwise.
    let evpn_kept = super::evpn::kept(cfg, &node);
    if let Some(kept) = &evpn_kept {
        dynamic.evpn = kept.merged(dynamic.evpn);
    }
    notify::tell("STATUS=attaching the programs");
    let expected = converge(cfg, &dynamic, &mut dataplane, &node, Bridges::Create).await?;
    let events = dataplane.take_events()?;
    let api = api::bind(&cfg.node.api_socket)?;
    let metrics = metrics::bind(cfg.node.metrics_listen)?;
    // Last, so that a start-up that failed leaves no task behind.
    if let Some(plane) = &plane {
        plane.spawn_tasks().await;
    }
    Ok(Started {
        node,
        dataplane,
        plane,
        expected,
        events,
        api,
        metrics,
        evpn_kept,
    })
}

/// Announces readiness once the admin API answers.
pub async fn ready(cfg: &Config, node: &Node) -> Result<(), DaemonError> {
    await_api(&cfg.node.api_socket).await?;
    let facts = node.facts();
    info!(
        vtep = %facts.vtep,
        datapath = ?facts.datapath,
        adopted = facts.adopted,
        "vlnet node ready"
    );
    notify::tell(&format!("READY=1\nSTATUS={}", status_line(node)));
    Ok(())
}

/// The decap mode for `setting` on `underlay`: `auto` takes TC where XDP
/// would cost more than it saves (see [`netlink::prefers_tc`]).
pub(super) fn choose_datapath(setting: DatapathSetting, underlay: &LinkSummary) -> DatapathMode {
    let tc = match setting {
        DatapathSetting::Tc => true,
        DatapathSetting::Xdp => false,
        DatapathSetting::Auto => netlink::prefers_tc(underlay.kind.as_deref()),
    };
    if tc {
        DatapathMode::Tc
    } else {
        DatapathMode::Xdp
    }
}

/// Loads (or adopts) the programs and maps; [`converge`] then brings them to
/// what the config and the control plane say.
async fn load_dataplane(cfg: &Config) -> Result<(Arc<Node>, Dataplane), DaemonError> {
    let nl = Netlink::connect()?;
    let underlay = nl.require_link(&cfg.node.underlay).await?;
    let vtep = match cfg.node.vtep {
        Some(v) => v,
        None => nl
            .first_ipv4(underlay.index)
            .await?
            .ok_or_else(|| DaemonError::NoVtep(underlay.name.clone()))?,
    };
    if underlay.mtu < VLNET_ENCAP_LEN + 68 {
        return Err(DaemonError::SmallMtu {
            name: underlay.name.clone(),
            mtu: underlay.mtu,
        });
    }
    let adopted = bpf::has_pins(&cfg.node.name)?;
    let mut programs = Programs::load(&cfg.node.name)?;
    let found = bpf::bpffs::bpffs()?;
    if let bpf::bpffs::Found::Ancestor { pid } = found.found {
        info!(
            ancestor = pid,
            "this process runs in a private mount namespace (ip netns exec?): pinning in the \
             BPF filesystem of the one it was started from"
        );
    }
    let mut maps = Maps::take_from(programs.ebpf_mut())?;
    // Before the control plane programs its persisted routes.
    maps.set_fdb_capacities(fdb_capacities(cfg, cfg));
    let datapath = choose_datapath(cfg.node.datapath, &underlay);
    let facts = NodeFacts {
        name: cfg.node.name.clone(),
        vtep,
        underlay: underlay.name.clone(),
        underlay_mtu: underlay.mtu,
        datapath,
        adopted,
        relay: cfg.is_gateway(),
        vnis: Vec::new(),
        bypass: BTreeSet::new(),
        links: Vec::new(),
    };
    let node = Arc::new(Node::new(facts, maps));
    let dataplane = Dataplane {
        programs: Arc::new(Mutex::new(programs)),
        nl,
        underlay,
        vtep,
        datapath,
        adopted,
        reported: BTreeMap::new(),
    };
    Ok((node, dataplane))
}

/// Loads and starts the control plane if the node has a `[wireguard]`
/// section: tunnel and persisted state first, so that the first
/// convergence already keeps the members' peers (a restart must not drop
/// them even for a moment).
async fn start_control_plane(
    cfg: &Config,
    node: &Arc<Node>,
) -> Result<Option<Arc<ControlPlane>>, DaemonError> {
    let Some(wg) = &cfg.wireguard else {
        return Ok(None);
    };
    let facts = node.facts();
    let hooks: Arc<dyn DataplaneHooks> = node.clone();
    let plane = ControlPlane::load(cfg, wg, facts.vtep, facts.underlay_mtu, hooks)?;
    node.set_control(Arc::clone(&plane));
    plane.start().await?;
    Ok(Some(plane))
}

/// Waits until the admin API answers a status request on `socket` (the
/// listener is bound and its task serves), so that readiness is only
/// announced to a node `vlnet ctl` can talk to.
async fn await_api(socket: &Path) -> Result<(), DaemonError> {
    let path = socket.to_path_buf();
    let asked = tokio::task::spawn_blocking(move || api::request(&path, &api::Request::Status));
    let answer = asked.await.map_err(|e| ApiError::Io {
        path: socket.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    answer.map(drop).map_err(DaemonError::from)
}

/// One line for `systemctl status`: what the node forwards and how its
/// programs came to be.
pub fn status_line(node: &Node) -> String {
    let facts = node.facts();
    let count = |action| facts.links.iter().filter(|l| l.action == action).count();
    format!(
        "forwarding {} VNIs ({:?} decap); links: {} adopted, {} upgraded, {} re-attached, {} attached",
        facts.vnis.len(),
        facts.datapath,
        count(LinkAction::Adopted),
        count(LinkAction::Upgraded),
        count(LinkAction::Reattached),
        count(LinkAction::Attached),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn underlay(kind: Option<&str>) -> LinkSummary {
        LinkSummary {
            index: 2,
            name: "ul0".into(),
            kind: kind.map(str::to_owned),
            mtu: 1500,
            controller: None,
            mac: None,
            oper_up: true,
        }
    }

    #[test]
    fn choose_datapath_follows_the_setting_and_auto_the_underlay_kind() {
        // Every setting on every kind of underlay: `tc` and `xdp` are
        // obeyed; `auto` takes XDP on a physical NIC (no kind) and TC on a
        // virtual link (veth, bond, VLAN, ...).
        for kind in [
            None,
            Some("veth"),
            Some("bond"),
            Some("vlan"),
            Some("dummy"),
        ] {
            let ul = underlay(kind);
            assert_eq!(
                choose_datapath(DatapathSetting::Tc, &ul),
                DatapathMode::Tc,
                "{kind:?}"
            );
            assert_eq!(
                choose_datapath(DatapathSetting::Xdp, &ul),
                DatapathMode::Xdp,
                "{kind:?}"
            );
            let auto = if netlink::prefers_tc(kind) {
                DatapathMode::Tc
            } else {
                DatapathMode::Xdp
            };
            assert_eq!(
                choose_datapath(DatapathSetting::Auto, &ul),
                auto,
                "{kind:?}"
            );
        }
        assert_eq!(
            choose_datapath(DatapathSetting::Auto, &underlay(None)),
            DatapathMode::Xdp
        );
        assert_eq!(
            choose_datapath(DatapathSetting::Auto, &underlay(Some("veth"))),
            DatapathMode::Tc
        );
    }
}
