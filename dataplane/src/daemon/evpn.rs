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

/// What the convergence task and the EVPN agent exchange.
pub struct EvpnLink {
    /// The remote VTEPs the agent publishes.
    pub vteps: watch::Receiver<RemoteVteps>,
    /// Bumped after every convergence: the agent programs its FDB entries
    /// again (a convergence that read the VTEPs just before a new one
    /// arrived removes the entries placed behind it meanwhile).
    pub converged: watch::Sender<u64>,
}

/// Starts the agent in `tasks` if `cfg` has `[evpn]`; its link with the
/// convergence task (`None` without `[evpn]`). On a gateway (a controller,
/// `plane`) its members' MACs are advertised too, behind this node's VTEP.
pub fn spawn(
    tasks: &mut TaskSet,
    cfg: &Config,
    node: &Arc<Node>,
    plane: Option<&ControlPlane>,
) -> Option<EvpnLink> {
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
    let (converged, converged_rx) = watch::channel(0);
    let edges = run::Edges {
        hooks,
        members,
        vteps: tx,
        converged: converged_rx,
        status: node.evpn_status(),
    };
    tasks.spawn("evpn", run::run(setup, edges));
    Some(EvpnLink {
        vteps: rx,
        converged,
    })
}
