//! The control plane's decisions, with no I/O: what the controller and a
//! member do with each message, observation and operator command, returned
//! as [`Effect`]s for the running parts (`controller.rs`, `member.rs`,
//! `locals.rs`) to carry out — the split of boringtun's `noise` (a protocol
//! state machine) and `device` (sockets and tasks).
//!
//! - [`controller`]: the controller's policy. A member is authenticated by
//!   its WireGuard key and trusted with nothing else: it speaks only for its
//!   own VTEP and its granted VNIs, holds at most its quota of MACs per VNI,
//!   takes a MAC nobody holds (first come) and one held elsewhere only when
//!   the move is authorized (an operator's grant, or the holder released it),
//!   and never chooses a sequence number (the controller does).
//! - [`member`]: a member follows the controller's decisions and reports its
//!   own MACs.
//! - [`claims`]: claims waiting for a MAC to be released.
//!
//! Both also hold the IP addresses bound to MACs (ARP/ND suppression,
//! `control/neighbook.rs`): a member binds addresses only to MACs it holds,
//! never one bound to a MAC someone else holds, and within its quota.
//!
//! Time is passed in ([`Now`]); what the kernel knows is asked through
//! [`CloudView`].

pub mod claims;
pub mod controller;
pub mod member;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::time::Duration;

use super::macbook::FdbChange;
use super::neighbook::{MacKey, NeighSet};
use super::wire::Message;
use crate::mac::MacAddr;

/// The time, as the decisions need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time since the daemon's epoch (MAC mobility rules).
    pub mono: Duration,
    /// Unix seconds (invites, grants).
    pub unix: u64,
}

/// What the data plane knows that the control plane does not: MACs learned
/// from, or pinned behind, static peers (the cloud's kernel-vxlan nodes).
pub trait CloudView {
    /// The VTEP a static or learned FDB entry places `mac` on `vni` behind.
    fn fdb_holder(&self, vni: u32, mac: MacAddr) -> Option<Ipv4Addr>;
}

/// A [`CloudView`] that knows nothing (no data plane, or tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCloud;

impl CloudView for NoCloud {
    fn fdb_holder(&self, _vni: u32, _mac: MacAddr) -> Option<Ipv4Addr> {
        None
    }
}

/// Why control input was refused: the `reason` label of
/// `vlnet_control_rejected_total`. Names never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// A connection from an address that is neither a member nor invited.
    NotMember,
    /// A frame of another protocol version.
    BadVersion,
    /// A frame or payload that does not parse or validate.
    Malformed,
    /// A route for a VTEP or VNI that is not the member's.
    Forged,
    /// A message out of place (e.g. no Hello first).
    Unexpected,
    /// A refused invite token.
    BadToken,
    /// A claim of a MAC held elsewhere, without an authorized move.
    NotOwner,
    /// A claim beyond the member's quota of MACs on the VNI.
    Quota,
    /// A move of a MAC frozen as a duplicate (RFC 7432 §15.1).
    Frozen,
    /// A session dropped because it did not keep up with what it is sent.
    SlowReader,
    /// A connection refused because the member already has too many.
    TooManyConnections,
    /// A binding of an IP address bound to a MAC someone else holds (EVPN's
    /// duplicate IP detection): the cloud's addresses cannot be taken over
    /// through the ARP/ND suppression cache.
    DuplicateIp,
}

impl RejectReason {
    /// Every reason, in label order.
    pub const ALL: [RejectReason; 12] = [
        Self::NotMember,
        Self::BadVersion,
        Self::Malformed,
        Self::Forged,
        Self::Unexpected,
        Self::BadToken,
        Self::NotOwner,
        Self::Quota,
        Self::Frozen,
        Self::SlowReader,
        Self::TooManyConnections,
        Self::DuplicateIp,
    ];

    /// The metric label.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::NotMember => "not_member",
            Self::BadVersion => "bad_version",
            Self::Malformed => "malformed",
            Self::Forged => "forged",
            Self::Unexpected => "unexpected",
            Self::BadToken => "bad_token",
            Self::NotOwner => "not_owner",
            Self::Quota => "quota",
            Self::Frozen => "frozen",
            Self::SlowReader => "slow_reader",
            Self::TooManyConnections => "too_many_connections",
            Self::DuplicateIp => "duplicate_ip",
        }
    }
}

/// Refused input: counted, and logged once per `(member, reason, MAC)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Who sent it.
    pub member: String,
    /// Why it was refused.
    pub reason: RejectReason,
    /// The MAC it concerned, if any.
    pub mac: Option<(u32, MacAddr)>,
    /// What was wrong, for the log.
    pub detail: String,
}

/// What the running control plane must do after a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send `message` on member `to`'s session (the controller's side), or to
    /// the controller (a member's side; `to` is then the controller's name).
    Send {
        /// The receiver.
        to: String,
        /// The message.
        message: Message,
    },
    /// Program these changes into this node's FDB.
    Fdb(Vec<FdbChange>),
    /// Program these MACs' IP bindings into this node's ARP/ND suppression
    /// table (each set replaces the MAC's control-plane bindings; empty:
    /// none).
    Neigh(Vec<(MacKey, NeighSet)>),
    /// `mac` no longer lives here (an authorized move took it): drop the
    /// stale entry this node's bridge holds for it, so traffic for it floods
    /// to vlnet's overlay port at once.
    ForgetLocal {
        /// The VNI.
        vni: u32,
        /// The MAC.
        mac: MacAddr,
    },
    /// Count and log refused input.
    Reject(Rejection),
    /// Save the registry (controller) or the membership (member).
    Persist,
    /// Bring the WireGuard peers to the registry or membership.
    SyncPeers,
    /// The VNIs or peers the data plane serves changed: converge again.
    Converge,
    /// End member `member`'s session (it was removed).
    EndSession {
        /// The member.
        member: String,
    },
}
