//! A QEMU guest that live-migrates between two hosts of a lab test-bed and
//! a user VM that reaches it: [`Guest`] boots it on host A (side 0) with
//! the memory asked for ([`GuestMemory`]: its size, and a load that keeps it
//! busy, running before each migration), moves it to the other side and
//! back, and stops each source QEMU once its state has left; [`user_view`]
//! is what the user sees of it. The test-bed is
//! anything that names its two hosts, their migration addresses and the
//! user: [`GuestSites`].

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::beds::scenario::BRIDGE;
use crate::primitives::guest_memory::{GuestMemory, LOAD_READY};
use crate::primitives::interrupt::Interrupt;
use crate::primitives::probe;
use crate::primitives::qemu::{
    GuestImage, GuestSpec, MigrationReport, MigrationUri, Qemu, GUEST_SINK_PORT,
};
use crate::primitives::session::tcp_throughput;
use crate::primitives::topology::{Host, Vm};
use crate::LabError;

/// The guest's overlay address.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The guest's MAC.
pub const GUEST_MAC: &str = "52:54:00:00:00:64";
/// The port a destination QEMU listens on for the migration stream.
pub const MIGRATION_PORT: u16 = 4444;

/// The `[wireguard] open_ports` item a vlnet node needs to receive the
/// migration stream on its tunnel address (members reach nothing else on
/// the node but VXLAN and the control port).
#[must_use]
pub fn migration_open_port() -> String {
    format!("tcp/{MIGRATION_PORT}")
}
/// Wait after a migration completed (plus the WAN's RTT, where there is
/// one) before anything is measured: QEMU's announce rounds are over by
/// then.
pub const SETTLE: Duration = Duration::from_secs(1);
/// How long the guest may take to boot (TCG) or to answer after a move.
const ANSWER_LIMIT: Duration = Duration::from_mins(2);
/// How long a loaded guest may take, after it answers, per MiB it fills.
const FILL_LIMIT_PER_MIB: Duration = Duration::from_millis(100);
/// Seconds over which QEMU estimates a loaded guest's dirty rate.
const DIRTY_RATE_SECS: u32 = 1;
/// Interval of the user's pings, ms.
pub const USER_PING_INTERVAL_MS: u64 = 10;
/// Interval of the user's pings.
pub const USER_PING_INTERVAL: Duration = Duration::from_millis(USER_PING_INTERVAL_MS);
/// Pings whose median is the user's RTT.
const USER_RTT_PINGS: u32 = 30;
/// Length of the user's TCP throughput probe.
pub const USER_TCP_TIME: Duration = Duration::from_secs(2);

/// What the user saw of the guest over one round of probes.
#[derive(Debug, Clone, PartialEq)]
pub struct UserView {
    /// Median ping RTT, ms.
    pub rtt_ms: Option<f64>,
    /// TCP throughput into the guest's sink, Mbit/s.
    pub throughput_mbps: Option<f64>,
    /// Pings answered.
    pub received: u32,
    /// Pings sent, up to the last one answered.
    pub sent: u32,
}

/// The user's view of the guest: the median RTT of 30 pings every
/// [`USER_PING_INTERVAL`], and TCP throughput into the guest's sink over
/// [`USER_TCP_TIME`]. A probe that fails is reported on stderr (`when`
/// says which round) and left unmeasured.
#[must_use]
pub fn user_view(sites: &dyn GuestSites, when: &str) -> UserView {
    let user = sites.user().ns();
    let mut view = UserView {
        rtt_ms: None,
        throughput_mbps: None,
        received: 0,
        sent: 0,
    };
    match probe::ping(user, GUEST_IP, USER_RTT_PINGS, USER_PING_INTERVAL) {
        Ok(r) => {
            // With a deadline ping sends until `count` replies came back:
            // requests still in flight at the end are not losses.
            let (sent, lost) = r.answered_window();
            view.rtt_ms = r.rtt_p50_ms();
            (view.received, view.sent) = (sent - lost, sent);
        }
        Err(e) => eprintln!("  warning: RTT {when} not measured: {e}"),
    }
    let sink = SocketAddrV4::new(GUEST_IP, GUEST_SINK_PORT);
    match tcp_throughput(user, sink, USER_TCP_TIME) {
        Ok(bps) => view.throughput_mbps = Some(bps / 1e6),
        Err(e) => eprintln!("  warning: throughput {when} not measured: {e}"),
    }
    view
}

/// A test-bed a [`Guest`] runs on: hosts A (side 0) and B (side 1), each
/// with bridge [`BRIDGE`], and a user VM that reaches the guest.
pub trait GuestSites {
    /// Host A (`0`) or B (`1`).
    fn host(&self, side: usize) -> &Host;
    /// The address host `side`'s QEMU listens on for an incoming migration.
    fn migration_addr(&self, side: usize) -> Ipv4Addr;
    /// The VM whose view of the guest is measured.
    fn user(&self) -> &Vm;
    /// Authorizes the guest's MAC to move to host `side`, where the
    /// test-bed's control plane asks for it (`vlnet ctl vm move`); nothing
    /// by default.
    fn authorize_move(&self, side: usize) -> Result<(), LabError> {
        let _ = side;
        Ok(())
    }
}

/// The guest: the QEMU it runs in now, and on which host.
pub struct Guest<'a> {
    sites: &'a dyn GuestSites,
    image: &'a GuestImage,
    memory: GuestMemory,
    dir: &'a Path,
    qemu: Qemu,
    side: usize,
    starts: u32,
}

impl<'a> Guest<'a> {
    /// Boots the guest with `memory` on host A and waits until the user
    /// reaches it and its load (if any) has filled its memory.
    pub fn boot(
        sites: &'a dyn GuestSites,
        image: &'a GuestImage,
        memory: GuestMemory,
        dir: &'a Path,
        interrupt: &Interrupt,
    ) -> Result<Self, LabError> {
        let guest = Self {
            sites,
            image,
            memory,
            dir,
            qemu: start(sites, image, memory, dir, (0, "g0"), None)?,
            side: 0,
            starts: 1,
        };
        guest.wait_answers(interrupt)?;
        if let Some(load) = memory.load {
            let limit = ANSWER_LIMIT + FILL_LIMIT_PER_MIB * load.fill_mib;
            let started = Instant::now();
            while !guest.qemu.console().contains(LOAD_READY) {
                interrupt.check()?;
                if started.elapsed() > limit {
                    return Err(LabError::Invalid(format!(
                        "the guest did not fill {} MiB within {limit:?}; console:\n{}",
                        load.fill_mib,
                        guest.qemu.console()
                    )));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(guest)
    }

    /// QEMU's estimate of how fast a loaded guest changes its memory, MiB/s
    /// (`None` for an idle guest: nothing to measure).
    pub fn dirty_rate(&self) -> Result<Option<f64>, LabError> {
        if self.memory.load.is_none() {
            return Ok(None);
        }
        self.qemu.dirty_rate(DIRTY_RATE_SECS).map(Some)
    }

    /// The host the guest runs on now: `0` (A) or `1` (B).
    #[must_use]
    pub fn side(&self) -> usize {
        self.side
    }

    /// The test-bed.
    #[must_use]
    pub fn sites(&self) -> &'a dyn GuestSites {
        self.sites
    }

    /// Waits until the guest answers the user's ping.
    fn wait_answers(&self, interrupt: &Interrupt) -> Result<(), LabError> {
        let started = Instant::now();
        let user = self.sites.user().ns();
        while probe::ping(user, GUEST_IP, 1, Duration::from_millis(200))?.received == 0 {
            interrupt.check()?;
            if started.elapsed() > ANSWER_LIMIT {
                return Err(LabError::Invalid(format!(
                    "the guest did not answer within {ANSWER_LIMIT:?}; console:\n{}",
                    self.qemu.console()
                )));
            }
        }
        Ok(())
    }

    /// Live-migrates the guest to the other host (a QEMU started there
    /// listens on its [`GuestSites::migration_addr`]) and stops the source.
    pub fn migrate(&mut self) -> Result<MigrationReport, LabError> {
        let to = 1 - self.side;
        let uri = MigrationUri::Tcp(SocketAddrV4::new(
            self.sites.migration_addr(to),
            MIGRATION_PORT,
        ));
        self.sites.authorize_move(to)?;
        let name = format!("g{}", self.starts);
        self.starts += 1;
        let target = start(
            self.sites,
            self.image,
            self.memory,
            self.dir,
            (to, &name),
            Some(&uri),
        )?;
        if self.memory.load.is_some() {
            self.qemu.lift_migration_limit()?;
        }
        let report = self.qemu.migrate(&uri)?;
        std::mem::replace(&mut self.qemu, target).stop();
        self.side = to;
        Ok(report)
    }

    /// Brings the guest back to host A and waits until the user reaches it
    /// there.
    pub fn return_home(&mut self, interrupt: &Interrupt) -> Result<(), LabError> {
        if self.side != 0 {
            self.migrate()?;
        }
        self.wait_answers(interrupt)?;
        std::thread::sleep(SETTLE);
        Ok(())
    }
}

/// Starts QEMU `name` for the guest on host `side`.
fn start(
    sites: &dyn GuestSites,
    image: &GuestImage,
    memory: GuestMemory,
    dir: &Path,
    (side, name): (usize, &str),
    incoming: Option<&MigrationUri>,
) -> Result<Qemu, LabError> {
    Qemu::start(
        sites.host(side),
        BRIDGE,
        &GuestSpec {
            image,
            name,
            mac: GUEST_MAC,
            ip: (GUEST_IP, 24),
            dir,
            incoming,
            memory,
        },
    )
}
