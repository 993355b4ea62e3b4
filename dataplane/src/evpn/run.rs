//! The agent's I/O edge: one [`speaker`] task per neighbor, the local MACs
//! the data plane publishes, and the graceful-restart timers go into the
//! [`Agent`]; its effects go out to the speakers, the FDB
//! ([`DataplaneHooks::apply_fdb`]) and the flood lists (a watch the
//! convergence task follows). Every task it starts is its own: when it is
//! aborted (daemon shutdown) they end with it and their connections close.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::mutex::lock;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::agent::{Agent, Effect, PeerView, RemoteVteps, VniView};
use super::open::{GracefulRestart, Local};
use super::queue::{self, CommandQueue};
use super::restart::Kept;
use super::session::Session;
use super::speaker::{self, Command, Report};
use super::vni::VniTable;
use crate::config::EvpnConfig;
use crate::conn_limit::Backoff;
use crate::control::member_routes::MemberRoutes;
use crate::control::neighbook::{MacKey, NeighSet};
use crate::control::DataplaneHooks;
use crate::mac::MacAddr;
use crate::model::{EvpnNeighbor, EvpnReport, EvpnVni};

/// The first reconnect delay after a session fails.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_mins(2);
/// Reports one speaker may have waiting.
const REPORT_QUEUE: usize = 256;
/// How long a restarted node waits for its first read of the bridges
/// before its sessions start: the End-of-RIB after its first routes makes
/// the neighbors drop every route of its that did not come again.
const FIRST_READ_WAIT: Duration = Duration::from_secs(2);
/// How often the VNI views in the status are rebuilt, when routes changed:
/// a rebuild walks every MAC, too much for every UPDATE of a full table.
const VIEWS_REFRESH: Duration = Duration::from_secs(1);

/// What the agent needs to start.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The node's name.
    pub name: String,
    /// The node's VTEP.
    pub vtep: Ipv4Addr,
    /// `[evpn]`.
    pub cfg: EvpnConfig,
    /// The EVPN VNIs' route distinguishers and targets.
    pub vnis: VniTable,
    /// After a restart with graceful restart on: what the data plane held.
    pub kept: Option<Kept>,
}

impl Setup {
    /// The BGP identifier: `router_id`, else the VTEP.
    #[must_use]
    pub fn router_id(&self) -> Ipv4Addr {
        self.cfg.router_id.unwrap_or(self.vtep)
    }

    /// The agent, for `neighbors` neighbors, resuming what was kept.
    fn agent(&self, neighbors: usize) -> Agent {
        let mut agent = Agent::new(
            &self.name,
            self.vtep,
            self.vnis.clone(),
            neighbors,
            self.cfg.max_routes_per_neighbor,
        );
        if let Some(kept) = self.kept.clone() {
            agent.resume(kept);
        }
        agent
    }

    /// What this side of every session announces; `restarted`: the first
    /// sessions after a restart (the R and F bits).
    fn local(&self, restarted: bool) -> Local {
        Local {
            asn: self.cfg.asn,
            router_id: self.router_id(),
            peer_asn: self.cfg.asn,
            hold_time: self.cfg.hold_time,
            graceful_restart: (self.cfg.restart_time > 0).then_some(GracefulRestart {
                restart_time: self.cfg.restart_time,
                restarting: restarted,
                forwarding_preserved: restarted,
            }),
        }
    }
}

/// One neighbor as `vlnet ctl evpn` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborStatus {
    /// Its address.
    pub addr: SocketAddr,
    /// Routes held and whether the session is up.
    pub view: PeerView,
    /// When the session came up (while it is).
    pub up_since: Option<Instant>,
}

/// What the agent shows of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Its neighbors, in the config's order.
    pub neighbors: Vec<NeighborStatus>,
    /// Its VNIs.
    pub vnis: Vec<VniView>,
}

impl Snapshot {
    /// The answer to `vlnet ctl evpn`.
    #[must_use]
    pub fn report(&self) -> EvpnReport {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        EvpnReport {
            neighbors: self
                .neighbors
                .iter()
                .map(|n| EvpnNeighbor {
                    neighbor: n.addr.to_string(),
                    state: if n.view.up { "established" } else { "down" }.to_owned(),
                    uptime_secs: n.up_since.map(|t| t.elapsed().as_secs()),
                    mac_routes: count(n.view.mac_routes),
                    imet_routes: count(n.view.imet_routes),
                })
                .collect(),
            vnis: self
                .vnis
                .iter()
                .map(|v| EvpnVni {
                    vni: v.vni,
                    local_macs: count(v.local_macs),
                    remote_macs: count(v.remote_macs),
                    vteps: v.vteps.clone(),
                })
                .collect(),
        }
    }
}

/// What the agent shows of itself, shared with the API and `/metrics`.
pub type Status = Arc<Mutex<Snapshot>>;

/// What the agent is connected to.
pub struct Edges {
    /// The data plane.
    pub hooks: Arc<dyn DataplaneHooks>,
    /// On a gateway, what it advertises for its members.
    pub members: Option<watch::Receiver<MemberRoutes>>,
    /// Where the remote VTEPs go (the convergence task).
    pub vteps: watch::Sender<RemoteVteps>,
    /// Bumped after every convergence.
    pub converged: watch::Receiver<u64>,
    /// What `vlnet ctl evpn` and `/metrics` show.
    pub status: Status,
}

/// Runs the agent until it is aborted, publishing the remote VTEPs and its
/// neighbors. The MACs it advertises, with their addresses, are the data
/// plane's local ones and, on a gateway, the ones its members hold: behind
/// this node's VTEP, which relays to them. After every convergence it
/// programs its FDB entries again.
pub async fn run(setup: Setup, edges: Edges) {
    let Edges {
        hooks,
        mut members,
        vteps,
        mut converged,
        status,
    } = edges;
    let neighbors: Vec<SocketAddr> = setup
        .cfg
        .neighbors
        .iter()
        .map(|n| SocketAddr::V4(n.0))
        .collect();
    let mut agent = setup.agent(neighbors.len());
    vteps.send_replace(agent.remote_vteps());
    let restarted = agent.restarting();
    let restart_time = Duration::from_secs(u64::from(setup.cfg.restart_time));
    let local = setup.local(restarted);
    let mut locals = hooks.local_macs();
    if restarted {
        let _ = tokio::time::timeout(FIRST_READ_WAIT, locals.changed()).await;
    }
    let mut tasks = JoinSet::new();
    let (commands, mut reports) = spawn_speakers(&neighbors, &local, &mut tasks);
    *lock(&status) = first_snapshot(&neighbors, &agent);
    let (sweep_tx, mut sweeps) = mpsc::unbounded_channel::<(usize, u64)>();
    let restart_over = tokio::time::sleep(restart_time);
    tokio::pin!(restart_over);
    let started = Instant::now();
    let mut shell = Shell {
        hooks,
        vteps,
        commands,
        sweep_tx,
    };
    let effects = take_local(&mut agent, &mut locals, members.as_mut(), started.elapsed());
    shell.carry_out(effects, &mut tasks);
    note_routes(&status, &agent);
    let mut refresh = tokio::time::interval(VIEWS_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut views_stale = false;
    loop {
        let effects = tokio::select! {
            Some((i, report)) = reports.recv() => {
                let effects = agent.report(i, &report, started.elapsed());
                note(&status, i, &report);
                effects
            }
            changed = locals.changed() => {
                if changed.is_err() {
                    return; // the data plane is gone
                }
                take_local(&mut agent, &mut locals, members.as_mut(), started.elapsed())
            }
            changed = async {
                match members.as_mut() {
                    Some(m) => m.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if changed.is_err() {
                    members = None; // the control plane stopped
                }
                take_local(&mut agent, &mut locals, members.as_mut(), started.elapsed())
            }
            Some((i, generation)) = sweeps.recv() => {
                agent.sweep(i, generation, started.elapsed())
            }
            () = &mut restart_over, if agent.restarting() => agent.restart_over(),
            _ = refresh.tick() => {
                if std::mem::take(&mut views_stale) {
                    note_routes(&status, &agent);
                }
                let effects = agent.local_neighs(&addresses(&*shell.hooks, members.as_ref()));
                if effects.is_empty() {
                    continue;
                }
                effects
            }
            Ok(()) = converged.changed() => {
                shell.hooks.apply_evpn_fdb(&agent.fdb_entries());
                continue;
            }
            Some(_) = tasks.join_next() => continue, // a timer that fired
        };
        views_stale = true;
        note_peers(&status, &agent);
        shell.carry_out(effects, &mut tasks);
    }
}

/// Starts a speaker per neighbor in `tasks`, as `local`; their command
/// queues, in the neighbors' order, and their merged reports.
fn spawn_speakers(
    neighbors: &[SocketAddr],
    local: &Local,
    tasks: &mut JoinSet<()>,
) -> (Vec<CommandQueue>, mpsc::Receiver<(usize, Report)>) {
    let (report_tx, reports) = mpsc::channel::<(usize, Report)>(REPORT_QUEUE);
    let mut commands = Vec::new();
    for (i, &addr) in neighbors.iter().enumerate() {
        let (cmd_tx, cmd_rx) = mpsc::channel(REPORT_QUEUE);
        commands.push(CommandQueue::new(queue::BUDGET, cmd_tx, tasks));
        let (tx, mut rx) = mpsc::channel(REPORT_QUEUE);
        let session = Session::new(local.clone(), Backoff::new(BACKOFF_MIN, BACKOFF_MAX));
        tasks.spawn(speaker::run(addr, session, cmd_rx, tx));
        let merged = report_tx.clone();
        tasks.spawn(async move {
            while let Some(r) = rx.recv().await {
                if merged.send((i, r)).await.is_err() {
                    return;
                }
            }
        });
    }
    (commands, reports)
}

/// Hands the agent the MACs to advertise as this node's, the bridges' and
/// the members', with the members' next hops (a direct member's own
/// address), and the direct members the zone floods to.
fn take_local(
    agent: &mut Agent,
    locals: &mut watch::Receiver<BTreeSet<(u32, MacAddr)>>,
    members: Option<&mut watch::Receiver<MemberRoutes>>,
    now: Duration,
) -> Vec<Effect> {
    let mut advertised = locals.borrow_and_update().clone();
    let mut hops = BTreeMap::new();
    let mut floods = BTreeMap::new();
    if let Some(m) = members {
        let routes = m.borrow_and_update();
        for (key, held) in &routes.macs {
            advertised.insert(*key);
            if let Some(hop) = held.next_hop {
                hops.insert(*key, hop);
            }
        }
        floods.clone_from(&routes.floods);
    }
    let mut effects = agent.set_next_hops(hops);
    effects.extend(agent.set_direct_floods(&floods));
    effects.extend(agent.local(&advertised, now));
    effects
}

/// The addresses of the MACs advertised as this node's: those the data
/// plane snooped from its VMs and, on a gateway, its members'.
fn addresses(
    hooks: &dyn DataplaneHooks,
    members: Option<&watch::Receiver<MemberRoutes>>,
) -> BTreeMap<MacKey, NeighSet> {
    let mut out = hooks.local_neighs();
    if let Some(m) = members {
        let routes = m.borrow();
        out.extend(
            routes
                .macs
                .iter()
                .map(|(k, held)| (*k, held.neighs.clone())),
        );
    }
    out
}

/// What the agent shows before any session came up.
fn first_snapshot(neighbors: &[SocketAddr], agent: &Agent) -> Snapshot {
    Snapshot {
        neighbors: neighbors
            .iter()
            .map(|&addr| NeighborStatus {
                addr,
                view: PeerView::default(),
                up_since: None,
            })
            .collect(),
        vnis: agent.vni_views(),
    }
}

/// Records a session coming up or going down in the status.
fn note(status: &Status, i: usize, report: &Report) {
    if let Some(n) = lock(status).neighbors.get_mut(i) {
        match report {
            Report::Established(_) => n.up_since = Some(Instant::now()),
            Report::Down(_) => n.up_since = None,
            Report::Update(_) | Report::Refresh => {}
        }
    }
}

/// Copies the agent's neighbor views (states and route counts) into the
/// status.
fn note_peers(status: &Status, agent: &Agent) {
    let views = agent.peers();
    for (n, view) in lock(status).neighbors.iter_mut().zip(views) {
        n.view = view;
    }
}

/// Copies the agent's neighbor and VNI views into the status.
fn note_routes(status: &Status, agent: &Agent) {
    note_peers(status, agent);
    lock(status).vnis = agent.vni_views();
}

/// Where effects go.
struct Shell {
    hooks: Arc<dyn DataplaneHooks>,
    vteps: watch::Sender<RemoteVteps>,
    commands: Vec<CommandQueue>,
    sweep_tx: mpsc::UnboundedSender<(usize, u64)>,
}

impl Shell {
    fn carry_out(&mut self, effects: Vec<Effect>, tasks: &mut JoinSet<()>) {
        let mut fdb = Vec::new();
        let mut neigh = Vec::new();
        let mut forget = BTreeSet::new();
        for e in effects {
            match e {
                Effect::Send { peer, update } => self.command(
                    peer,
                    Command::Send(netgauze_bgp_pkt::BgpMessage::Update(update)),
                ),
                Effect::Cease { peer, notification } => {
                    self.command(peer, Command::Cease(notification));
                }
                Effect::Fdb(change) => fdb.push(change),
                Effect::Forget { vni, mac } => {
                    forget.insert((vni, mac));
                }
                Effect::Vteps(vteps) => {
                    self.vteps.send_replace(vteps);
                }
                Effect::Neigh { key, set } => neigh.push((key, set)),
                Effect::SweepAfter {
                    peer,
                    generation,
                    after,
                } => {
                    let tx = self.sweep_tx.clone();
                    tasks.spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = tx.send((peer, generation));
                    });
                }
            }
        }
        if !fdb.is_empty() {
            self.hooks.apply_evpn_fdb(&fdb);
        }
        if !neigh.is_empty() {
            self.hooks.apply_neigh(&neigh);
        }
        for (vni, mac) in forget {
            self.hooks.forget_local(vni, mac);
        }
    }

    fn command(&self, peer: usize, c: Command) {
        if let Some(queue) = self.commands.get(peer) {
            // Over budget, it resets the session (see `queue`).
            queue.send(c);
        }
    }
}
