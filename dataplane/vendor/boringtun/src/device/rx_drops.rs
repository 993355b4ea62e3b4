// Copyright (c) 2019 Cloudflare, Inc. All rights reserved.
// SPDX-License-Identifier: BSD-3-Clause

//! vlnet patch: received datagrams the device drops, counted by reason
//! instead of printed one by one (upstream wrote a line to stderr for every
//! datagram a connected socket could not open: anyone who can send to the
//! port could fill the log). The counts are the answer to the UAPI command
//! `vlnet_rx_drops=1` (see `api.rs`): one `reason=count` line per reason.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::noise::errors::WireGuardError;

/// Why a received datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxDrop {
    /// It failed authentication: a data packet's AEAD tag, a handshake's
    /// MAC1 or static key (corrupted, forged, or sealed with another key).
    Auth,
    /// A data packet's counter was seen before or is behind the replay
    /// window (a replayed or badly delayed packet).
    Replay,
    /// Not a WireGuard message, or one of the wrong length or type, or a
    /// handshake with a bad or old timestamp.
    Malformed,
    /// No peer or no session for it (unknown receiver index or key, or a
    /// data packet before any handshake).
    NoSession,
    /// Its inner source address is not among the sending peer's allowed IPs.
    SourceNotAllowed,
    /// A handshake refused while the device is under load (the sender gets
    /// a cookie).
    UnderLoad,
    /// Anything else the protocol refuses.
    Other,
}

impl RxDrop {
    /// Every reason, in the order of the UAPI answer.
    pub const ALL: [RxDrop; 7] = [
        RxDrop::Auth,
        RxDrop::Replay,
        RxDrop::Malformed,
        RxDrop::NoSession,
        RxDrop::SourceNotAllowed,
        RxDrop::UnderLoad,
        RxDrop::Other,
    ];

    /// The reason's name in the UAPI answer (and vlnet's metric label).
    pub fn name(self) -> &'static str {
        match self {
            RxDrop::Auth => "auth",
            RxDrop::Replay => "replay",
            RxDrop::Malformed => "malformed",
            RxDrop::NoSession => "no_session",
            RxDrop::SourceNotAllowed => "source_not_allowed",
            RxDrop::UnderLoad => "under_load",
            RxDrop::Other => "other",
        }
    }

    /// The reason for a datagram `decapsulate` refused with `error`.
    pub fn of(error: &WireGuardError) -> RxDrop {
        use WireGuardError as E;
        match error {
            E::InvalidAeadTag | E::InvalidMac | E::WrongKey => RxDrop::Auth,
            E::DuplicateCounter | E::InvalidCounter => RxDrop::Replay,
            E::IncorrectPacketLength
            | E::InvalidPacket
            | E::WrongPacketType
            | E::UnexpectedPacket
            | E::InvalidTai64nTimestamp
            | E::WrongTai64nTimestamp => RxDrop::Malformed,
            E::WrongIndex | E::NoCurrentSession | E::ConnectionExpired => RxDrop::NoSession,
            E::UnderLoad => RxDrop::UnderLoad,
            E::DestinationBufferTooSmall | E::LockFailed => RxDrop::Other,
        }
    }
}

/// The device's drop counters, one per [`RxDrop`].
#[derive(Debug, Default)]
pub struct RxDrops([AtomicU64; RxDrop::ALL.len()]);

impl RxDrops {
    /// Counts one datagram dropped for `reason`.
    pub fn count(&self, reason: RxDrop) {
        self.0[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one datagram `decapsulate` refused with `error`.
    pub fn count_error(&self, error: &WireGuardError) {
        self.count(RxDrop::of(error));
    }

    /// Datagrams dropped for `reason` so far.
    pub fn get(&self, reason: RxDrop) -> u64 {
        self.0[reason as usize].load(Ordering::Relaxed)
    }

    /// Writes one `reason=count` line per reason.
    pub fn write_to(&self, writer: &mut impl Write) -> std::io::Result<()> {
        for reason in RxDrop::ALL {
            writeln!(writer, "{}={}", reason.name(), self.get(reason))?;
        }
        Ok(())
    }
}
