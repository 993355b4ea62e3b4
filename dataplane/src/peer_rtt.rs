//! Underlay latency to every remote VTEP: one ICMP echo per peer per second
//! on the path VXLAN takes (a member's tunnel address goes through
//! WireGuard), so the RTT of the inner flows (`lib/flows.h`) can be told
//! apart from the RTT of the network under them.
//!
//! [`PeerRttTable`] is the bookkeeping (pure, tested here); [`probe_peers`]
//! sends and receives on a raw ICMP socket.

use std::collections::BTreeMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use etherparse::{IcmpEchoHeader, Icmpv4Header, Icmpv4Type, Ipv4Slice};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::fdb::monotonic_ns;

/// Time between two probes of one peer.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A peer that answered none of its last this many probes is unreachable.
pub const UNREACHABLE_AFTER: u32 = 3;
/// The smoothed RTT is the median of this many latest answers: robust to
/// the odd slow answer (a WireGuard handshake, a busy moment) and current
/// within a few seconds.
const MEDIAN_OF: usize = 8;
/// Payload carried by each probe (a marker for packet captures).
const PROBE_PAYLOAD: &[u8; 8] = b"vlnetrtt";

/// What the probes found out about one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRtt {
    /// Smoothed RTT (median of the latest answers), once a probe was
    /// answered.
    pub srtt_ns: Option<u64>,
    /// The latest answered probe's RTT.
    pub last_ns: Option<u64>,
    /// Probes sent.
    pub sent: u64,
    /// Probes answered.
    pub answered: u64,
    /// False once [`UNREACHABLE_AFTER`] probes in a row went unanswered.
    pub reachable: bool,
}

#[derive(Debug, Clone, Default)]
struct PeerState {
    rtt: PeerRtt,
    /// The probe in flight: (sequence number, sent at).
    outstanding: Option<(u16, u64)>,
    misses: u32,
    /// The latest answers' RTTs, oldest first.
    recent: std::collections::VecDeque<u64>,
}

/// Probe bookkeeping for every peer.
#[derive(Debug, Default)]
pub struct PeerRttTable {
    peers: BTreeMap<Ipv4Addr, PeerState>,
}

impl PeerRttTable {
    /// Begins a round at `now_ns`: peers no longer in `peers` are forgotten,
    /// a previous probe still unanswered counts as a miss, and every peer
    /// gets probe `seq` (the caller sends it).
    pub fn start_round(&mut self, peers: &[Ipv4Addr], seq: u16, now_ns: u64) {
        self.peers.retain(|vtep, _| peers.contains(vtep));
        for &vtep in peers {
            let state = self.peers.entry(vtep).or_insert_with(|| PeerState {
                rtt: PeerRtt {
                    reachable: true,
                    ..PeerRtt::default()
                },
                ..PeerState::default()
            });
            if state.outstanding.is_some() {
                state.misses += 1;
                state.rtt.reachable = state.misses < UNREACHABLE_AFTER;
            }
            state.outstanding = Some((seq, now_ns));
            state.rtt.sent += 1;
        }
    }

    /// Records an echo reply from `vtep` with sequence `seq` at `now_ns`;
    /// returns the RTT sample, or `None` for a reply to no probe in flight
    /// (late, duplicated, or not ours).
    pub fn answer(&mut self, vtep: Ipv4Addr, seq: u16, now_ns: u64) -> Option<u64> {
        let state = self.peers.get_mut(&vtep)?;
        let (want, sent_ns) = state.outstanding?;
        if want != seq {
            return None;
        }
        let sample = now_ns.saturating_sub(sent_ns);
        state.outstanding = None;
        state.misses = 0;
        let rtt = &mut state.rtt;
        rtt.answered += 1;
        rtt.reachable = true;
        rtt.last_ns = Some(sample);
        if state.recent.len() == MEDIAN_OF {
            state.recent.pop_front();
        }
        state.recent.push_back(sample);
        let mut sorted: Vec<u64> = state.recent.iter().copied().collect();
        sorted.sort_unstable();
        rtt.srtt_ns = Some(sorted[(sorted.len() - 1) / 2]);
        Some(sample)
    }

    /// Every peer probed, by address.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(Ipv4Addr, PeerRtt)> {
        self.peers.iter().map(|(&v, s)| (v, s.rtt)).collect()
    }

    /// The smoothed RTT to `vtep`, if it ever answered.
    #[must_use]
    pub fn srtt_ns(&self, vtep: Ipv4Addr) -> Option<u64> {
        self.peers.get(&vtep).and_then(|s| s.rtt.srtt_ns)
    }
}

fn lock(table: &Mutex<PeerRttTable>) -> std::sync::MutexGuard<'_, PeerRttTable> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Probes the peers `peers()` names every [`PROBE_INTERVAL`], forever,
/// recording into `table`. Without a raw socket (no `CAP_NET_RAW`) it logs
/// once and returns: the rest of the daemon works without underlay RTTs.
pub async fn probe_peers(peers: impl Fn() -> Vec<Ipv4Addr>, table: Arc<Mutex<PeerRttTable>>) {
    let socket = match raw_icmp_socket() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "underlay RTT probes disabled: no raw ICMP socket");
            return;
        }
    };
    // Raw sockets see every echo reply of the namespace: ours carry this id.
    let id: u16 = rand::random();
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u16 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                seq = seq.wrapping_add(1);
                let targets = peers();
                lock(&table).start_round(&targets, seq, monotonic_ns());
                for vtep in targets {
                    if let Err(e) = send_probe(socket.get_ref(), vtep, id, seq) {
                        tracing::debug!(%vtep, error = %e, "RTT probe not sent");
                    }
                }
            }
            reply = recv_reply(&socket, id) => match reply {
                Ok(Some((vtep, seq))) => {
                    lock(&table).answer(vtep, seq, monotonic_ns());
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "underlay RTT probes stopped");
                    return;
                }
            },
        }
    }
}

fn raw_icmp_socket() -> io::Result<AsyncFd<Socket>> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    socket.set_nonblocking(true)?;
    // SAFETY: the socket owns its file descriptor, open and unchanged for as
    // long as the Socket lives (moved into the AsyncFd).
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
        .map_err(|e| io::Error::other(e.to_string()))
}

fn send_probe(socket: &Socket, vtep: Ipv4Addr, id: u16, seq: u16) -> io::Result<()> {
    let header = Icmpv4Header::with_checksum(
        Icmpv4Type::EchoRequest(IcmpEchoHeader { id, seq }),
        PROBE_PAYLOAD,
    );
    let mut packet = header.to_bytes().to_vec();
    packet.extend_from_slice(PROBE_PAYLOAD);
    socket.send_to(&packet, &SockAddr::from(SocketAddrV4::new(vtep, 0)))?;
    Ok(())
}

/// Waits for the next ICMP packet; `Some((source, seq))` when it is an echo
/// reply with our `id`.
async fn recv_reply(socket: &AsyncFd<Socket>, id: u16) -> io::Result<Option<(Ipv4Addr, u16)>> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    let n = loop {
        let mut ready = socket.readable().await?;
        match ready.try_io(|s| s.get_ref().recv(&mut buf)) {
            Ok(result) => break result?,
            Err(_would_block) => {}
        }
    };
    // SAFETY: recv() initialised the first `n` bytes.
    let bytes: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
    Ok(parse_reply(bytes, id))
}

/// `(source, seq)` of an IPv4 packet carrying an ICMP echo reply with `id`.
fn parse_reply(packet: &[u8], id: u16) -> Option<(Ipv4Addr, u16)> {
    let ip = Ipv4Slice::from_slice(packet).ok()?;
    let (icmp, _) = Icmpv4Header::from_slice(ip.payload().payload).ok()?;
    match icmp.icmp_type {
        Icmpv4Type::EchoReply(echo) if echo.id == id => Some((ip.header().source_addr(), echo.seq)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
    const MS: u64 = 1_000_000;

    #[test]
    fn the_smoothed_rtt_is_the_median_of_the_latest_answers() {
        let mut t = PeerRttTable::default();
        // A slow first answer (a handshake), then steady 20 ms.
        for (seq, rtt) in [(1u16, 80), (2, 20), (3, 21), (4, 20)] {
            let sent = u64::from(seq) * 1000 * MS;
            t.start_round(&[A], seq, sent);
            assert_eq!(t.answer(A, seq, sent + rtt * MS), Some(rtt * MS));
        }
        let rtt = t.snapshot()[0].1;
        assert_eq!((rtt.srtt_ns, rtt.last_ns), (Some(20 * MS), Some(20 * MS)));
        assert_eq!((rtt.sent, rtt.answered, rtt.reachable), (4, 4, true));
        for seq in 5..=12u16 {
            let sent = u64::from(seq) * 1000 * MS;
            t.start_round(&[A], seq, sent);
            t.answer(A, seq, sent + 30 * MS);
        }
        assert_eq!(
            t.srtt_ns(A),
            Some(30 * MS),
            "only the latest {MEDIAN_OF} count"
        );
    }

    #[test]
    fn late_duplicate_and_foreign_replies_are_ignored() {
        let mut t = PeerRttTable::default();
        t.start_round(&[A], 1, 0);
        t.start_round(&[A], 2, 1000 * MS);
        assert_eq!(t.answer(A, 1, 1001 * MS), None, "reply to an older probe");
        assert_eq!(t.answer(A, 2, 1010 * MS), Some(10 * MS));
        assert_eq!(t.answer(A, 2, 1011 * MS), None, "duplicate");
        assert_eq!(t.answer(B, 2, 1012 * MS), None, "not probed");
    }

    #[test]
    fn three_misses_in_a_row_make_a_peer_unreachable_until_it_answers() {
        let mut t = PeerRttTable::default();
        for seq in 1..=3 {
            t.start_round(&[A], seq, u64::from(seq) * 1000 * MS);
            assert!(t.snapshot()[0].1.reachable, "after {} misses", seq - 1);
        }
        t.start_round(&[A], 4, 4000 * MS);
        assert!(!t.snapshot()[0].1.reachable);
        t.answer(A, 4, 4005 * MS);
        assert!(t.snapshot()[0].1.reachable);
    }

    #[test]
    fn peers_that_left_are_forgotten() {
        let mut t = PeerRttTable::default();
        t.start_round(&[A, B], 1, 0);
        t.start_round(&[B], 2, 1000 * MS);
        let peers: Vec<Ipv4Addr> = t.snapshot().into_iter().map(|p| p.0).collect();
        assert_eq!(peers, [B]);
        assert_eq!(t.srtt_ns(A), None);
    }

    #[test]
    fn only_echo_replies_with_our_id_are_parsed() {
        let reply = |icmp_type| {
            let icmp = Icmpv4Header::with_checksum(icmp_type, PROBE_PAYLOAD);
            let ip = etherparse::Ipv4Header::new(
                (icmp.header_len() + PROBE_PAYLOAD.len()) as u16,
                64,
                etherparse::IpNumber::ICMP,
                A.octets(),
                [198, 18, 0, 1],
            )
            .unwrap();
            let mut bytes = ip.to_bytes().to_vec();
            bytes.extend_from_slice(&icmp.to_bytes());
            bytes.extend_from_slice(PROBE_PAYLOAD);
            bytes
        };
        let echo = |id, seq| IcmpEchoHeader { id, seq };
        assert_eq!(
            parse_reply(&reply(Icmpv4Type::EchoReply(echo(7, 9))), 7),
            Some((A, 9))
        );
        assert_eq!(
            parse_reply(&reply(Icmpv4Type::EchoReply(echo(8, 9))), 7),
            None
        );
        assert_eq!(
            parse_reply(&reply(Icmpv4Type::EchoRequest(echo(7, 9))), 7),
            None
        );
        assert_eq!(parse_reply(b"garbage", 7), None);
    }
}
