//! The control plane at scale, in process: a controller's MAC book holding
//! the routes of 1,000 members with 10,000 MACs between them, the full sync a
//! (re)connecting member receives (build, encode, decode, apply), the same
//! for every member at once (a controller restart), and the memory a route
//! costs (resident set growth over a million routes).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde::Serialize;
use vlnet_dataplane::control::macbook::MacBook;
use vlnet_dataplane::control::mobility::NodeId;
use vlnet_dataplane::control::wire::{self, Decoder, FullSync, MacAdvert, Message};
use vlnet_dataplane::mac::MacAddr;

/// Members in the run.
pub const MEMBERS: u32 = 1_000;
/// MACs in the run, spread evenly over the members.
pub const MACS: u32 = 10_000;
/// Routes held to measure the memory per route.
const MEMORY_ROUTES: u32 = 1_000_000;
/// The VNI every route is on.
const VNI: u32 = 100;

/// What the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// Members.
    pub members: u32,
    /// MACs.
    pub macs: u32,
    /// Controller: applying every member's adverts.
    pub apply_all_ms: f64,
    /// One member's full sync: routes → frame → decode → applied.
    pub full_sync_ms: f64,
    /// The full-sync frame's size.
    pub full_sync_bytes: usize,
    /// Every member's full sync built and encoded (a controller restart).
    pub all_full_syncs_ms: f64,
    /// Resident memory per route, bytes (measured over a million routes).
    pub bytes_per_mac: f64,
}

fn member_vtep(m: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 2)) + m)
}

fn mac(index: u32) -> MacAddr {
    let low = index.to_be_bytes();
    MacAddr([0x02, 0x5c, low[0], low[1], low[2], low[3]])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A book holding `macs` routes from `members` members.
fn filled_book(members: u32, macs: u32) -> MacBook {
    let mut book = MacBook::new("controller", Ipv4Addr::new(198, 19, 0, 1));
    let origins: Vec<NodeId> = (0..members)
        .map(|m| NodeId::new(&format!("m{m}")))
        .collect();
    for i in 0..macs {
        let m = i % members;
        let advert = MacAdvert {
            vni: VNI,
            mac: mac(i),
            vtep: member_vtep(m),
            seq: 0,
        };
        book.advert(&advert, &origins[m as usize], Duration::ZERO);
    }
    book
}

/// Resident set size of this process, bytes.
fn resident_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unreadable /proc/self/statm: {statm:?}"))?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages * u64::try_from(page).unwrap_or(4096))
}

/// Runs the scale measurements.
pub fn run() -> Result<ScaleReport> {
    let start = Instant::now();
    let controller = filled_book(MEMBERS, MACS);
    let apply_all = start.elapsed();
    ensure!(
        controller.len() == MACS as usize,
        "controller holds {} routes",
        controller.len()
    );

    let vnis: BTreeSet<u32> = [VNI].into();
    let start = Instant::now();
    let routes: Vec<MacAdvert> = controller
        .routes(Some(&vnis))
        .into_iter()
        .filter(|r| r.vtep != member_vtep(0))
        .collect();
    let frame = wire::encode(&Message::FullSync(FullSync { entries: routes }))?;
    let mut decoder = Decoder::new();
    decoder.feed(&frame);
    let Some(Message::FullSync(sync)) = decoder.next_message()? else {
        anyhow::bail!("the full sync did not decode as one");
    };
    let mut member = MacBook::new("m0", member_vtep(0));
    let applied = member.full_sync(&NodeId::new("controller"), &sync.entries, Duration::ZERO);
    let full_sync = start.elapsed();
    ensure!(
        applied.fdb.len() + 10 >= MACS as usize,
        "member applied {}",
        applied.fdb.len()
    );

    let start = Instant::now();
    let mut bytes = 0;
    for m in 0..MEMBERS {
        let entries: Vec<MacAdvert> = controller
            .routes(Some(&vnis))
            .into_iter()
            .filter(|r| r.vtep != member_vtep(m))
            .collect();
        bytes += wire::encode(&Message::FullSync(FullSync { entries }))?.len();
    }
    let all_full_syncs = start.elapsed();
    ensure!(bytes > 0, "nothing encoded");

    let before = resident_bytes()?;
    let big = filled_book(MEMBERS, MEMORY_ROUTES);
    let after = resident_bytes()?;
    ensure!(
        big.len() == MEMORY_ROUTES as usize,
        "big book holds {}",
        big.len()
    );
    drop(big);
    #[allow(clippy::cast_precision_loss, reason = "a ratio for humans")]
    let bytes_per_mac = after.saturating_sub(before) as f64 / f64::from(MEMORY_ROUTES);

    Ok(ScaleReport {
        members: MEMBERS,
        macs: MACS,
        apply_all_ms: ms(apply_all),
        full_sync_ms: ms(full_sync),
        full_sync_bytes: frame.len(),
        all_full_syncs_ms: ms(all_full_syncs),
        bytes_per_mac,
    })
}

impl ScaleReport {
    /// The report as text, with the targets.
    #[must_use]
    pub fn table(&self) -> String {
        format!(
            "control plane scale: {} members, {} MACs (in process)\n\
             \x20 controller applies every advert   {:>9.1} ms\n\
             \x20 one member's full sync           {:>9.1} ms  ({} bytes; target < 2000 ms)\n\
             \x20 every member's full sync built   {:>9.1} ms  (a controller restart)\n\
             \x20 memory per MAC                   {:>9.1} B   (target < 200 B)\n",
            self.members,
            self.macs,
            self.apply_all_ms,
            self.full_sync_ms,
            self.full_sync_bytes,
            self.all_full_syncs_ms,
            self.bytes_per_mac
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_gets_every_other_members_routes() {
        let book = filled_book(10, 100);
        assert_eq!(book.len(), 100);
        let vnis: BTreeSet<u32> = [VNI].into();
        let theirs = book
            .routes(Some(&vnis))
            .into_iter()
            .filter(|r| r.vtep != member_vtep(0))
            .count();
        assert_eq!(theirs, 90);
        assert!(resident_bytes().unwrap() > 0);
    }
}
