//! Starting the EVPN agent (see [`crate::evpn::run`]) when the config has
//! an `[evpn]` section: the remote VTEPs it learns go to the convergence
//! task, which merges them into the data plane's. It runs in the daemon's
//! task set, so a shutdown aborts it and its sessions close with it.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::control::{ControlPlane, DataplaneHooks};
use crate::evpn::agent::RemoteVteps;
use crate::evpn::run::{self, Setup};
use crate::node::Node;
use crate::tasks::TaskSet;

/// Starts the agent in `tasks` if `cfg` has `[evpn]`; the remote VTEPs it
/// publishes (`None` without `[evpn]`). On a gateway (a controller,
/// `plane`) its members' MACs are advertised too, behind this node's VTEP.
pub fn spawn(
    tasks: &mut TaskSet,
    cfg: &Config,
    node: &Arc<Node>,
    plane: Option<&ControlPlane>,
) -> Option<watch::Receiver<RemoteVteps>> {
    let evpn = cfg.evpn.as_ref()?;
    let vtep = node.facts().vtep;
    let setup = Setup {
        name: cfg.node.name.clone(),
        vtep,
        cfg: evpn.clone(),
        vnis: evpn.vni_table(evpn.router_id.unwrap_or(vtep), &cfg.vni),
    };
    tracing::info!(
        asn = evpn.asn,
        router_id = %setup.router_id(),
        neighbors = evpn.neighbors.len(),
        "starting the EVPN speaker"
    );
    let (tx, rx) = watch::channel(RemoteVteps::default());
    let hooks: Arc<dyn DataplaneHooks> = node.clone();
    let members = plane.map(ControlPlane::member_macs);
    tasks.spawn(
        "evpn",
        run::run(setup, hooks, members, tx, node.evpn_status()),
    );
    Some(rx)
}
