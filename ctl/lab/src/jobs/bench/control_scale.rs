//! The control plane at scale, in process: a controller whose 1,000 members
//! claim 10,000 MACs between them through its ownership checks (each
//! member's full sync, as after a controller restart), the full sync a
//! (re)connecting member receives (build, encode, decode, apply), the same
//! for every member at once, and the memory a route costs (resident set
//! growth over a million routes).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use vlnet_dataplane::control::core::controller::{ControllerCore, Identity, Policy};
use vlnet_dataplane::control::core::{Effect, NoCloud, Now};
use vlnet_dataplane::control::macbook::MacBook;
use vlnet_dataplane::control::mobility::NodeId;
use vlnet_dataplane::control::registry::{MemberRecord, Registry};
use vlnet_dataplane::control::wire::{self, Decoder, FullSync, Hello, MacAdvert, Message};
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
    /// Controller: every member's full sync through the ownership checks.
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

fn member_name(m: u32) -> String {
    format!("m{m}")
}

/// A controller with `members` members (none connected) whose full syncs
/// claimed `macs` MACs between them, every claim accepted.
fn filled_controller(members: u32, macs: u32) -> Result<ControllerCore> {
    let mut registry = Registry::generate(&mut StdRng::seed_from_u64(1));
    for m in 0..members {
        let mut key = [0; 32];
        key[..4].copy_from_slice(&m.to_be_bytes());
        registry.members.insert(
            member_name(m),
            MemberRecord {
                public_key: key,
                tunnel_addr: member_vtep(m),
                vnis: vec![VNI],
                joined_at: 0,
                endpoint: None,
                pending_class: None,
            },
        );
    }
    let me = Identity {
        name: "controller".into(),
        endpoint: "198.18.0.1:51820".parse()?,
        tunnel_addr: Ipv4Addr::new(198, 19, 0, 1),
    };
    let mut core = ControllerCore::new(me, registry, Policy::default());
    let now = Now {
        mono: Duration::ZERO,
        unix: 0,
    };
    for m in 0..members {
        let entries = (0..macs)
            .filter(|i| i % members == m)
            .map(|i| MacAdvert {
                vni: VNI,
                mac: mac(i),
                vtep: member_vtep(m),
                seq: 0,
            })
            .collect();
        let effects = core.on_message(
            &member_name(m),
            Message::FullSync(FullSync { entries }),
            &[VNI],
            now,
            &NoCloud,
        );
        ensure!(
            !effects.iter().any(|e| matches!(e, Effect::Reject(_))),
            "member {m}'s claims were refused: {effects:?}"
        );
    }
    Ok(core)
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

/// Opens member `m`'s session; returns the full sync it is sent.
fn open(controller: &mut ControllerCore, m: u32) -> Result<Message> {
    let hello = Hello {
        node: member_name(m),
        version: "bench".into(),
        vtep: member_vtep(m),
        vnis: vec![VNI],
        underlay: None,
    };
    let first = controller
        .open_session(
            &member_name(m),
            member_vtep(m),
            &hello,
            u64::from(m),
            &[VNI],
        )
        .map_err(|r| anyhow::anyhow!("session refused: {}", r.detail))?;
    first
        .into_iter()
        .find(|msg| matches!(msg, Message::FullSync(_)))
        .ok_or_else(|| anyhow::anyhow!("no full sync"))
}

/// Resident set size of this process, bytes.
pub(super) fn resident_bytes() -> Result<u64> {
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
    let mut controller = filled_controller(MEMBERS, MACS)?;
    let apply_all = start.elapsed();
    ensure!(
        controller.book().len() == MACS as usize,
        "controller holds {} routes",
        controller.book().len()
    );

    let start = Instant::now();
    let first = open(&mut controller, 0)?;
    let frame = wire::encode(&first)?;
    let mut decoder = Decoder::new();
    decoder.feed(&frame);
    let Some(Message::FullSync(sync)) = decoder.next_message()? else {
        anyhow::bail!("the full sync did not decode as one");
    };
    let mut member = MacBook::new("m0", member_vtep(0));
    let applied =
        member.follow_full_sync(&NodeId::new("controller"), &sync.entries, Duration::ZERO);
    let full_sync = start.elapsed();
    ensure!(
        applied.fdb.len() + 10 >= MACS as usize,
        "member applied {}",
        applied.fdb.len()
    );

    let start = Instant::now();
    let mut bytes = 0;
    for m in 0..MEMBERS {
        bytes += wire::encode(&open(&mut controller, m)?)?.len();
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
    fn a_member_gets_every_route_of_its_vni() {
        let book = filled_book(10, 100);
        assert_eq!(book.len(), 100);
        let mut controller = filled_controller(10, 100).unwrap();
        let Message::FullSync(sync) = open(&mut controller, 0).unwrap() else {
            unreachable!()
        };
        assert_eq!(sync.entries.len(), 100);
        assert_eq!(
            sync.entries
                .iter()
                .filter(|r| r.vtep == member_vtep(0))
                .count(),
            10
        );
        assert!(resident_bytes().unwrap() > 0);
    }
}
