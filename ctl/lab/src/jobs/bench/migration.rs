//! The bench's migration runs: a VM moves between two hosts (link moved,
//! QEMU's RARP announce sent) while a third site pings it every 10 ms, once
//! with three vlnet nodes and once with three kernel-vxlan nodes (learning
//! on, as a Proxmox zone runs): pings lost in the same run, and vlnet's path
//! switch at the third site after the announce entered the new host.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::beds::scenario::{vm_ip, Scenario, Vtep};
use crate::jobs::migrate::{measure_move, MoveMeasure, PING_INTERVAL};
use crate::primitives::probe;
use crate::Datapath;

/// Both runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MigrationReport {
    /// Three vlnet nodes.
    pub vlnet: MoveMeasure,
    /// Three kernel-vxlan nodes.
    pub kernel: MoveMeasure,
}

fn run_one(tag: &str, vtep: Vtep, binary: &Path) -> Result<MoveMeasure> {
    let mut s = Scenario::build(tag, &[vtep, vtep, vtep], binary)?;
    // Every site learns VM 0 at site 0 first, as after any real traffic.
    for from in [1, 2] {
        probe::ping(s.sites[from].vm.ns(), vm_ip(0), 3, PING_INTERVAL)?;
    }
    Ok(measure_move(&mut s, 2)?)
}

/// Runs both.
pub fn run(binary: &Path) -> Result<MigrationReport> {
    Ok(MigrationReport {
        vlnet: run_one("bmv", Vtep::Vlnet(Datapath::Tc), binary)?,
        kernel: run_one("bmk", Vtep::Kernel, binary)?,
    })
}

impl MigrationReport {
    /// The report as text.
    #[must_use]
    pub fn table(&self) -> String {
        let switch = |m: &MoveMeasure| {
            m.switch_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.3}"))
        };
        format!(
            "migration: a VM moves between two hosts (RARP announce), a third site pings it every {} ms\n\
             \x20                                        vlnet     kernel\n\
             \x20 pings lost (of {})                 {:>9} {:>10}\n\
             \x20 path switch after the announce (ms) {:>9} {:>10}  (target <= 1 ms)\n",
            PING_INTERVAL.as_millis(),
            self.vlnet.pings_sent,
            self.vlnet.pings_lost,
            self.kernel.pings_lost,
            switch(&self.vlnet),
            switch(&self.kernel),
        )
    }
}
