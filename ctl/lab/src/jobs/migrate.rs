//! Moving a VM between hosts as a live migration does — its link leaves one
//! host's bridge for another's, then it sends QEMU's RARP announce — and
//! measuring what a third site sees: pings lost, and (between vlnet nodes)
//! how long after the announce entered the new host the third site's path
//! switched, from the nodes' move records (one machine, one monotonic clock).

use std::time::Duration;

use serde::Serialize;
use vlnet_dataplane::announce::announce;
use vlnet_dataplane::mac::MacAddr;

use crate::beds::scenario::{vm_ip, Scenario, BRIDGE};
use crate::primitives::daemon::Daemon;
use crate::primitives::netns::LabError;
use crate::primitives::probe;
use crate::primitives::topology::{Vm, VM_IF};

/// Ping interval from the third site.
pub const PING_INTERVAL: Duration = Duration::from_millis(10);
/// Pings sent per measured move.
const PINGS: u32 = 200;
/// When the move starts, after the first ping.
const MOVE_AFTER: Duration = Duration::from_millis(500);

/// What a third site saw of one move.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MoveMeasure {
    /// Pings sent every [`PING_INTERVAL`] across the move.
    pub pings_sent: u32,
    /// Of those, lost (the move itself, plus the switch).
    pub pings_lost: u32,
    /// From the announce entering the new host to the third site's path
    /// switch, ms (vlnet nodes only: the kernel keeps no move records).
    pub switch_ms: Option<f64>,
}

/// Sends QEMU's RARP announce from `vm`'s interface.
pub fn announce_from(vm: &Vm) -> Result<(), LabError> {
    let mac: MacAddr = vm
        .mac()
        .parse()
        .map_err(|e| LabError::Invalid(format!("VM MAC {}: {e}", vm.mac())))?;
    vm.ns()
        .within(move || announce(VM_IF, mac))?
        .map_err(|e| LabError::io("sending the RARP announce", e))
}

/// Moves site `from`'s VM to site `to`'s bridge and announces it there.
pub fn move_vm(s: &mut Scenario, from: usize, to: usize) -> Result<(), LabError> {
    if from == to || from.max(to) >= s.sites.len() {
        return Err(LabError::Invalid(format!(
            "cannot move site {from}'s VM to site {to}"
        )));
    }
    let (vm, host) = if from < to {
        let (a, b) = s.sites.split_at_mut(to);
        (&mut a[from].vm, &b[0].host)
    } else {
        let (a, b) = s.sites.split_at_mut(from);
        (&mut b[0].vm, &a[to].host)
    };
    vm.move_to(host, BRIDGE)?;
    announce_from(vm)
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
    let pinger = s.sites[third].vm.ns().clone();
    let pings = std::thread::spawn(move || probe::ping(&pinger, vm_ip(0), PINGS, PING_INTERVAL));
    std::thread::sleep(MOVE_AFTER);
    move_vm(s, 0, 1)?;
    let report = pings
        .join()
        .map_err(|_| LabError::Invalid("the pinger panicked".into()))??;
    let mac = s.sites[0].vm.mac().to_owned();
    let switch_ms = match (&s.sites[1].daemon, &s.sites[third].daemon) {
        (Some(new), Some(third)) => {
            let local = move_time_ns(new, &mac, "local")?;
            let remote = move_time_ns(third, &mac, "remote")?;
            local
                .zip(remote)
                .map(|(l, r)| Duration::from_nanos(r.saturating_sub(l)).as_secs_f64() * 1e3)
        }
        _ => None,
    };
    Ok(MoveMeasure {
        pings_sent: report.sent,
        pings_lost: report.sent.saturating_sub(report.received),
        switch_ms,
    })
}
