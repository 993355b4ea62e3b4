//! BGP EVPN at scale, in process: [`ROUTES`] type-2 routes from
//! [`VTEPS`] remote VTEPs arrive as UPDATE messages on the wire (one route
//! each, as a route reflector relays a MAC at a time), are decoded, go
//! through the received-routes table (`AdjRibIn`) and the MAC Mobility
//! rules (`MacBook`) into FDB changes: the routes per second, and the
//! resident memory each route costs. Then a MAC move (the same MAC at the
//! next sequence number behind another VTEP) through EVPN (decode, table,
//! book) against the same move through vlnet's own control plane (a
//! `MacAdvert` message decoded and followed), repeated: what each
//! protocol's processing adds to a move's convergence, the network aside.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::BgpMessage;
use serde::Serialize;
use vlnet_dataplane::control::macbook::MacBook;
use vlnet_dataplane::control::mobility::NodeId;
use vlnet_dataplane::control::wire::{self, MacAdvert, Message};
use vlnet_dataplane::evpn::rib::{AdjRibIn, Intent};
use vlnet_dataplane::evpn::vni::{VniRouting, VniTable};
use vlnet_dataplane::evpn::{advertise, codec};
use vlnet_dataplane::mac::MacAddr;

use super::control_scale::resident_bytes;

/// Type-2 routes received.
pub const ROUTES: u32 = 100_000;
/// Remote VTEPs they are spread over.
pub const VTEPS: u32 = 100;
/// MAC moves timed, each way.
const MOVES: u32 = 10_000;
/// The AS and the VNI.
const ASN: u32 = 65000;
const VNI: u32 = 100;
/// This node's VTEP (router id).
const ME: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// What the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct EvpnScaleReport {
    /// Routes received.
    pub routes: u32,
    /// Remote VTEPs.
    pub vteps: u32,
    /// Routes decoded, tabled and turned into FDB changes per second.
    pub routes_per_s: f64,
    /// Resident memory per route held (table and book), bytes.
    pub bytes_per_route: f64,
    /// One MAC move through EVPN (decode, table, book), µs.
    pub evpn_move_us: f64,
    /// One MAC move through vlnet's control plane (decode, book), µs.
    pub vlnet_move_us: f64,
}

fn mac(index: u32) -> MacAddr {
    let low = index.to_be_bytes();
    MacAddr([0x02, 0x5e, low[0], low[1], low[2], low[3]])
}

fn vtep(v: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 1, 0)) + v)
}

/// The wire bytes of VTEP `v`'s type-2 route for `mac` at `seq`, as its
/// own RD (router id:1) and the automatic route target name it.
fn route_bytes(v: u32, mac: MacAddr, seq: u32) -> Result<Vec<u8>> {
    let routing = VniRouting::auto(ASN, vtep(v), VNI, 1);
    let update = advertise::mac_route(&routing, vtep(v), mac, None, seq)?;
    Ok(codec::encode(&BgpMessage::Update(update))?)
}

fn update_of(bytes: &[u8]) -> Result<BgpUpdateMessage> {
    match codec::decode(bytes, true)? {
        BgpMessage::Update(u) => Ok(u),
        other => bail!("not an UPDATE: {other:?}"),
    }
}

/// Decodes `bytes` and applies it to `rib` and `book` at `now`; the FDB
/// changes.
fn receive(
    bytes: &[u8],
    rib: &mut AdjRibIn,
    book: &mut MacBook,
    vnis: &VniTable,
    peer: &NodeId,
    now: Duration,
) -> Result<usize> {
    let mut changes = 0;
    for intent in rib.apply(&update_of(bytes)?, vnis).intents {
        changes += match intent {
            Intent::Mac(a) => book.advert(&a, peer, now).fdb.len(),
            Intent::MacGone(w) => book.withdraw(&w, now).fdb.len(),
            Intent::Ip(_)
            | Intent::IpGone(_)
            | Intent::Router { .. }
            | Intent::FloodAdd { .. }
            | Intent::FloodRemove { .. } => 0,
        };
    }
    Ok(changes)
}

/// Runs the measurements: [`ROUTES`] routes from [`VTEPS`] VTEPs, and
/// [`MOVES`] moves.
pub fn run() -> Result<EvpnScaleReport> {
    measure(ROUTES, VTEPS, MOVES)
}

/// `routes` routes from `vteps` VTEPs into the FDB, then `moves` moves of
/// one MAC each way; fails unless every route and every move reached the
/// FDB.
fn measure(routes: u32, vteps: u32, moves: u32) -> Result<EvpnScaleReport> {
    let vnis = VniTable::auto(ASN, ME, [VNI]);
    let peer = NodeId::new("route-reflector");
    let per_move_us = |elapsed: Duration| elapsed.as_secs_f64() * 1e6 / f64::from(moves);
    let frames = (0..routes)
        .map(|i| route_bytes(i % vteps, mac(i), 0))
        .collect::<Result<Vec<_>>>()?;

    let before = resident_bytes()?;
    let mut rib = AdjRibIn::new(ME);
    let mut book = MacBook::new("me", ME);
    let start = Instant::now();
    let mut installed = 0;
    for frame in &frames {
        installed += receive(frame, &mut rib, &mut book, &vnis, &peer, Duration::ZERO)?;
    }
    let elapsed = start.elapsed();
    let after = resident_bytes()?;
    ensure!(
        installed == routes as usize && book.len() == routes as usize,
        "{installed} FDB changes and {} MACs for {routes} routes",
        book.len()
    );

    // One MAC moves back and forth between two VTEPs, a sequence number
    // higher each time, a minute apart (faster, the duplicate-MAC rules
    // would freeze it); every move must change the FDB.
    let roaming_mac = mac(routes);
    let evpn_moves = (1..=moves)
        .map(|seq| route_bytes(seq % 2, roaming_mac, seq))
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    for (minute, frame) in (1..).zip(&evpn_moves) {
        let now = Duration::from_mins(minute);
        let fdb_changes = receive(frame, &mut rib, &mut book, &vnis, &peer, now)?;
        ensure!(fdb_changes > 0, "an EVPN move changed nothing");
    }
    let evpn_move = start.elapsed();

    let mut member = MacBook::new("member", ME);
    let controller = NodeId::new("controller");
    let vlnet_moves = (1..=moves)
        .map(|seq| {
            wire::encode(&Message::MacAdvert(MacAdvert {
                vni: VNI,
                mac: roaming_mac,
                vtep: vtep(seq % 2),
                seq,
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    for (minute, frame) in (1..).zip(&vlnet_moves) {
        let Some((Message::MacAdvert(a), _)) = wire::decode(frame)? else {
            bail!("not a MAC advert");
        };
        let applied = member.follow_advert(&a, &controller, Duration::from_mins(minute));
        ensure!(!applied.fdb.is_empty(), "a vlnet move changed nothing");
    }
    let vlnet_move = start.elapsed();

    #[allow(clippy::cast_precision_loss, reason = "a ratio for humans")]
    let bytes_per_route = after.saturating_sub(before) as f64 / f64::from(routes);
    Ok(EvpnScaleReport {
        routes,
        vteps,
        routes_per_s: f64::from(routes) / elapsed.as_secs_f64(),
        bytes_per_route,
        evpn_move_us: per_move_us(evpn_move),
        vlnet_move_us: per_move_us(vlnet_move),
    })
}

impl EvpnScaleReport {
    /// The report as the bench prints it.
    #[must_use]
    pub fn table(&self) -> String {
        format!(
            "BGP EVPN at scale: {} type-2 routes from {} VTEPs, one per UPDATE (in process)\n\
             \x20 routes into the FDB               {:>9.0} /s  (decode, table, MAC Mobility rules)\n\
             \x20 memory per route                  {:>9.1} B\n\
             \x20 a MAC move, EVPN                  {:>9.2} µs  (decode, table, rules)\n\
             \x20 a MAC move, vlnet's control plane {:>9.2} µs  (decode, rules)\n",
            self.routes,
            self.vteps,
            self.routes_per_s,
            self.bytes_per_route,
            self.evpn_move_us,
            self.vlnet_move_us,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_every_move_reaches_the_fdb() {
        let report = measure(2_000, 10, 100).unwrap();
        assert_eq!((report.routes, report.vteps), (2_000, 10));
        assert!(report.routes_per_s > 0.0 && report.evpn_move_us > 0.0);
        assert!(report.table().contains("2000 type-2 routes from 10 VTEPs"));
    }

    #[test]
    fn a_route_from_another_as_is_not_taken() {
        // Another AS's route target imports into no VNI: the run must
        // notice that the routes never reached the FDB.
        let vnis = VniTable::auto(ASN + 1, ME, [VNI]);
        let mut rib = AdjRibIn::new(ME);
        let mut book = MacBook::new("me", ME);
        let frame = route_bytes(1, mac(1), 0).unwrap();
        let peer = NodeId::new("rr");
        let changes = receive(&frame, &mut rib, &mut book, &vnis, &peer, Duration::ZERO).unwrap();
        assert_eq!(changes, 0);
    }
}
