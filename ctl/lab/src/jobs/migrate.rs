//! Moving a VM between hosts as a live migration does — its link leaves one
//! host's bridge for another's, then it sends QEMU's RARP announce — and
//! measuring what a third site sees: pings lost, and (between vlnet nodes)
//! how long after the announce entered the new host the third site's path
//! switched, from the nodes' move records (one machine, one monotonic clock)
//! and from the third site's FDB as its pinned map shows it (the only
//! witness when a control plane such as EVPN moves the MAC).

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;
use vlnet_dataplane::announce::announce;
use vlnet_dataplane::fdb::monotonic_ns;
use vlnet_dataplane::mac::MacAddr;

use crate::beds::scenario::{Scenario, BRIDGE, VNI};
use crate::primitives::daemon::Daemon;
use crate::primitives::fdb_watch::FdbWatch;
use crate::primitives::netns::LabError;
use crate::primitives::probe;
use crate::primitives::topology::{Host, Vm, VM_IF};

/// Ping interval from the third site.
pub const PING_INTERVAL: Duration = Duration::from_millis(10);
/// Pings sent per measured move.
const PINGS: u32 = 200;
/// When the move starts, after the first ping.
const MOVE_AFTER: Duration = Duration::from_millis(500);
/// How long the third site's FDB is watched from the start of the pings.
const WATCH_LIMIT: Duration = Duration::from_secs(10);

/// What a third site saw of one move.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MoveMeasure {
    /// Pings sent every [`PING_INTERVAL`] across the move.
    pub pings_sent: u32,
    /// Of those, lost (the move itself, plus the switch).
    pub pings_lost: u32,
    /// From the announce entering the new host to the third site's path
    /// switch, ms (vlnet nodes only: the kernel keeps no move records), as
    /// the third site's data plane recorded it (`remote` move; none when
    /// the data plane moves nothing, as on an EVPN VNI).
    pub switch_ms: Option<f64>,
    /// From the announce leaving the VM (the lab's clock, the same
    /// monotonic clock) to the moment the third site's FDB was first seen
    /// placing the MAC behind the new host (its pinned map read every
    /// [`POLL`](crate::primitives::fdb_watch::POLL)), whichever plane
    /// wrote it (vlnet nodes only). The new host needs no entry for the
    /// MAC beforehand, as its `local` record does. 0 when the FDB had
    /// switched before the announce: with data-plane learning the VM's own
    /// first frames from its new host (a ping reply) may move it.
    pub fdb_switch_ms: Option<f64>,
}

/// Sites a VM moves between while another pings it: a [`Scenario`]'s
/// (static peers on one switch), or a cluster's members.
pub trait MoveSites {
    /// How many sites.
    fn count(&self) -> usize;
    /// Site `i`'s VM (site 0's is the one that moves).
    fn vm(&self, i: usize) -> &Vm;
    /// Site `i`'s vlnet daemon, if it runs vlnet.
    fn daemon(&self, i: usize) -> Option<&Daemon>;
    /// The VTEP other sites' FDBs place site `i`'s VMs behind.
    fn vtep(&self, i: usize) -> Ipv4Addr;
    /// Site `from`'s VM and site `to`'s host, borrowed together (see
    /// [`vm_and_host`]).
    fn vm_and_host(&mut self, from: usize, to: usize) -> (&mut Vm, &Host);
    /// What has to happen before site 0's VM moves to site `to`: nothing
    /// between static peers, an operator's grant in a cluster.
    fn authorize_move(&self, to: usize) -> Result<(), LabError> {
        let _ = to;
        Ok(())
    }
}

impl MoveSites for Scenario {
    fn count(&self) -> usize {
        self.sites.len()
    }

    fn vm(&self, i: usize) -> &Vm {
        &self.sites[i].vm
    }

    fn daemon(&self, i: usize) -> Option<&Daemon> {
        self.sites[i].daemon.as_ref()
    }

    fn vtep(&self, i: usize) -> Ipv4Addr {
        self.sites[i].host.ip()
    }

    fn vm_and_host(&mut self, from: usize, to: usize) -> (&mut Vm, &Host) {
        vm_and_host(&mut self.sites, from, to, |site| (&mut site.vm, &site.host))
    }
}

/// `sites[from]`'s VM and `sites[to]`'s host, borrowed together; `parts`
/// splits one site into its VM and host.
pub fn vm_and_host<T>(
    sites: &mut [T],
    from: usize,
    to: usize,
    parts: impl Fn(&mut T) -> (&mut Vm, &Host),
) -> (&mut Vm, &Host) {
    match from.cmp(&to) {
        std::cmp::Ordering::Equal => parts(&mut sites[from]),
        std::cmp::Ordering::Less => {
            let (a, b) = sites.split_at_mut(to);
            (parts(&mut a[from]).0, parts(&mut b[0]).1)
        }
        std::cmp::Ordering::Greater => {
            let (a, b) = sites.split_at_mut(from);
            (parts(&mut b[0]).0, parts(&mut a[to]).1)
        }
    }
}

/// Sends QEMU's RARP announce from `vm`'s interface.
pub fn announce_from(vm: &Vm) -> Result<(), LabError> {
    let mac = parse_mac(vm.mac())?;
    vm.ns()
        .within(move || announce(VM_IF, mac))?
        .map_err(|e| LabError::io("sending the RARP announce", e))
}

/// Moves site `from`'s VM to site `to`'s bridge and announces it there
/// (`from == to`: the VM, moved away before, comes back to its own site).
/// Returns when the announce was sent (`CLOCK_MONOTONIC` ns, the clock of
/// the nodes' move records).
pub fn move_vm(s: &mut impl MoveSites, from: usize, to: usize) -> Result<u64, LabError> {
    if from.max(to) >= s.count() {
        return Err(LabError::Invalid(format!(
            "cannot move site {from}'s VM to site {to}"
        )));
    }
    let (vm, host) = s.vm_and_host(from, to);
    vm.move_to(host, BRIDGE)?;
    let at = monotonic_ns();
    announce_from(vm)?;
    Ok(at)
}

/// When `daemon` recorded `mac` moving with `kind` (`"local"`/`"remote"`),
/// monotonic ns.
pub fn move_time_ns(daemon: &Daemon, mac: &str, kind: &str) -> Result<Option<u64>, LabError> {
    let text = daemon.ctl(&["moves", "--json"])?;
    let moves: serde_json::Value = serde_json::from_str(&text).map_err(|e| LabError::Parse {
        what: "vlnet ctl moves --json".into(),
        detail: e.to_string(),
    })?;
    Ok(moves.as_array().and_then(|all| {
        all.iter()
            .filter(|m| m["mac"] == mac && m["kind"] == kind)
            .filter_map(|m| m["monotonic_ns"].as_u64())
            .next_back()
    }))
}

/// Moves VM 0 to site 1 while site `third`'s VM pings it, and reports what
/// site `third` saw.
pub fn measure_move(s: &mut Scenario, third: usize) -> Result<MoveMeasure, LabError> {
    measure_move_to(s, 1, third)
}

/// Moves site 0's VM (wherever it is) to site `to` while site `third`'s
/// VM pings it, and reports what site `third` saw.
pub fn measure_move_to(
    s: &mut impl MoveSites,
    to: usize,
    third: usize,
) -> Result<MoveMeasure, LabError> {
    let (mac, ip) = (s.vm(0).mac().to_owned(), s.vm(0).ip());
    s.authorize_move(to)?;
    let watch = match s.daemon(third) {
        Some(daemon) => Some(FdbWatch::start(
            daemon,
            VNI,
            parse_mac(&mac)?.0,
            s.vtep(to),
            WATCH_LIMIT,
        )?),
        None => None,
    };
    let pinger = s.vm(third).ns().clone();
    let pings = std::thread::spawn(move || probe::ping(&pinger, ip, PINGS, PING_INTERVAL));
    std::thread::sleep(MOVE_AFTER);
    let announced = move_vm(s, 0, to)?;
    let report = pings
        .join()
        .map_err(|_| LabError::Invalid("the pinger panicked".into()))??;
    let seen = watch.and_then(FdbWatch::finish);
    let (mut switch_ms, mut fdb_switch_ms) = (None, None);
    if let (Some(new), Some(third)) = (s.daemon(to), s.daemon(third)) {
        let local = move_time_ns(new, &mac, "local")?;
        // A record older than this move's announce is an earlier move's.
        let since_local = |at: u64| {
            local
                .filter(|&l| at >= l)
                .map(|l| Duration::from_nanos(at - l).as_secs_f64() * 1e3)
        };
        switch_ms = move_time_ns(third, &mac, "remote")?.and_then(since_local);
        fdb_switch_ms =
            seen.map(|at| Duration::from_nanos(at.saturating_sub(announced)).as_secs_f64() * 1e3);
    }
    Ok(MoveMeasure {
        pings_sent: report.sent,
        pings_lost: report.sent.saturating_sub(report.received),
        switch_ms,
        fdb_switch_ms,
    })
}

fn parse_mac(text: &str) -> Result<MacAddr, LabError> {
    text.parse()
        .map_err(|e| LabError::Invalid(format!("VM MAC {text}: {e}")))
}
