//! The WireGuard cross-platform userspace API ("UAPI") text protocol, pure:
//! [`SetRequest`] renders a `set=1` request, [`parse_get`] reads the answer to
//! `get=1`, [`parse_errno`] the final `errno=` line. Keys are hex on the wire.
//!
//! See <https://www.wireguard.com/xplatform/#configuration-protocol>.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Key;

/// Lower-case hex of a key, as the UAPI wants it.
#[must_use]
pub fn hex_key(key: &Key) -> String {
    let mut s = String::with_capacity(64);
    for b in key {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A key from 64 hex digits (either case); `None` if it is anything else.
#[must_use]
pub fn parse_hex_key(text: &str) -> Option<Key> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (slot, pair) in key.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        *slot = u8::try_from(hi << 4 | lo).ok()?;
    }
    Some(key)
}

/// An allowed-IP prefix: an address and a prefix length no longer than the
/// address (32 for IPv4, 128 for IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedIp {
    addr: IpAddr,
    prefix: u8,
}

impl AllowedIp {
    /// `addr/prefix`; `None` if the prefix is too long for the address family.
    #[must_use]
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// The address.
    #[must_use]
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    #[must_use]
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl fmt::Display for AllowedIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One peer's part of a [`SetRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    public_key: Key,
    endpoint: Option<SocketAddr>,
    persistent_keepalive: Option<u16>,
    replace_allowed_ips: bool,
    allowed_ips: Vec<AllowedIp>,
    remove: bool,
}

impl PeerConfig {
    /// A peer identified by its public key, with nothing else set.
    #[must_use]
    pub fn new(public_key: Key) -> Self {
        Self {
            public_key,
            endpoint: None,
            persistent_keepalive: None,
            replace_allowed_ips: false,
            allowed_ips: Vec::new(),
            remove: false,
        }
    }

    /// Remove this peer (its sessions end; the key is no longer accepted).
    #[must_use]
    pub fn remove(mut self) -> Self {
        self.remove = true;
        self
    }

    /// Where to send to the peer (until it roams).
    #[must_use]
    pub fn endpoint(mut self, endpoint: SocketAddr) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Send a keepalive after `seconds` of silence (0 turns it off).
    #[must_use]
    pub fn persistent_keepalive(mut self, seconds: u16) -> Self {
        self.persistent_keepalive = Some(seconds);
        self
    }

    /// Drop the peer's current allowed IPs before adding these.
    #[must_use]
    pub fn replace_allowed_ips(mut self) -> Self {
        self.replace_allowed_ips = true;
        self
    }

    /// Route `ip` to this peer (and accept it as a source from it).
    #[must_use]
    pub fn allowed_ip(mut self, ip: AllowedIp) -> Self {
        self.allowed_ips.push(ip);
        self
    }

    /// The peer's public key.
    #[must_use]
    pub fn public_key(&self) -> &Key {
        &self.public_key
    }
}

/// A UAPI `set=1` request, built up and then [rendered](Self::render).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetRequest {
    private_key: Option<Key>,
    listen_port: Option<u16>,
    replace_peers: bool,
    peers: Vec<PeerConfig>,
}

impl SetRequest {
    /// A request that changes nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The interface's private key.
    #[must_use]
    pub fn private_key(mut self, key: Key) -> Self {
        self.private_key = Some(key);
        self
    }

    /// The UDP port to listen on (0: any).
    #[must_use]
    pub fn listen_port(mut self, port: u16) -> Self {
        self.listen_port = Some(port);
        self
    }

    /// Remove every existing peer before adding these.
    #[must_use]
    pub fn replace_peers(mut self) -> Self {
        self.replace_peers = true;
        self
    }

    /// Add or update a peer.
    #[must_use]
    pub fn peer(mut self, peer: PeerConfig) -> Self {
        self.peers.push(peer);
        self
    }

    /// The request text, from `set=1` to the terminating empty line.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = String::from("set=1\n");
        // `write!` into a String cannot fail.
        if let Some(key) = &self.private_key {
            let _ = writeln!(s, "private_key={}", hex_key(key));
        }
        if let Some(port) = self.listen_port {
            let _ = writeln!(s, "listen_port={port}");
        }
        if self.replace_peers {
            s.push_str("replace_peers=true\n");
        }
        for peer in &self.peers {
            let _ = writeln!(s, "public_key={}", hex_key(&peer.public_key));
            if peer.remove {
                s.push_str("remove=true\n");
                continue;
            }
            if let Some(endpoint) = peer.endpoint {
                let _ = writeln!(s, "endpoint={endpoint}");
            }
            if let Some(seconds) = peer.persistent_keepalive {
                let _ = writeln!(s, "persistent_keepalive_interval={seconds}");
            }
            if peer.replace_allowed_ips {
                s.push_str("replace_allowed_ips=true\n");
            }
            for ip in &peer.allowed_ips {
                let _ = writeln!(s, "allowed_ip={ip}");
            }
        }
        s.push('\n');
        s
    }
}

/// One peer as a `get=1` answer reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    /// The peer's public key.
    pub public_key: Key,
    /// Where we currently send to it, if known.
    pub endpoint: Option<SocketAddr>,
    /// When the last handshake completed (`last_handshake_time_sec`/`_nsec`,
    /// since the Unix epoch, as kernel WireGuard, wireguard-go and vlnet's
    /// patched boringtun report it); `None` if absent or zero (no handshake
    /// yet).
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
}

impl PeerState {
    /// How long ago the last handshake completed, as of `now` (zero for a
    /// handshake "in the future" of a clock that stepped back).
    #[must_use]
    pub fn handshake_age(&self, now: SystemTime) -> Option<Duration> {
        self.last_handshake
            .map(|t| now.duration_since(t).unwrap_or_default())
    }
}

/// The final `errno=<n>` of a UAPI answer; `None` if `text` has none.
#[must_use]
pub fn parse_errno(text: &str) -> Option<i32> {
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix("errno="))
        .and_then(|n| n.trim().parse().ok())
}

/// Why an answer to `get=1` does not read; names the offending line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    /// A line that is not `key=value`.
    #[error("line without `=`: {0:?}")]
    NoValue(String),
    /// A value that does not read as its key's type.
    #[error("bad value in {0:?}")]
    BadValue(String),
}

/// The peers in the answer to `get=1` (interface-level keys are skipped).
/// Fails, naming the offending line, on a malformed value or a peer key
/// before any `public_key`. Unknown keys are ignored, as the protocol asks.
pub fn parse_get(text: &str) -> Result<Vec<PeerState>, GetError> {
    let mut peers: Vec<PeerState> = Vec::new();
    let mut sec: Option<u64> = None;
    let mut nsec: u32 = 0;
    let finish_handshake = |peer: Option<&mut PeerState>, sec: &mut Option<u64>, nsec: &mut u32| {
        if let (Some(peer), Some(s)) = (peer, sec.take()) {
            let d = Duration::new(s, *nsec);
            peer.last_handshake = (!d.is_zero()).then(|| UNIX_EPOCH + d);
        }
        *nsec = 0;
    };
    for line in text.lines() {
        if line.is_empty() || line.starts_with("errno=") {
            break;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| GetError::NoValue(line.to_owned()))?;
        let bad = || GetError::BadValue(line.to_owned());
        if key == "public_key" {
            finish_handshake(peers.last_mut(), &mut sec, &mut nsec);
            peers.push(PeerState {
                public_key: parse_hex_key(value).ok_or_else(bad)?,
                endpoint: None,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
            });
            continue;
        }
        let Some(peer) = peers.last_mut() else {
            continue; // interface-level: own_public_key, listen_port, ...
        };
        match key {
            "endpoint" => peer.endpoint = Some(value.parse().map_err(|_| bad())?),
            "last_handshake_time_sec" => sec = Some(value.parse().map_err(|_| bad())?),
            "last_handshake_time_nsec" => nsec = value.parse().map_err(|_| bad())?,
            "rx_bytes" => peer.rx_bytes = value.parse().map_err(|_| bad())?,
            "tx_bytes" => peer.tx_bytes = value.parse().map_err(|_| bad())?,
            _ => {}
        }
    }
    finish_handshake(peers.last_mut(), &mut sec, &mut nsec);
    Ok(peers)
}

/// vlnet's own UAPI command (its boringtun answers it; `wg` never sends
/// it): the device's receive drop counters.
pub const RX_DROPS_REQUEST: &str = "vlnet_rx_drops=1\n\n";

/// The counters in the answer to [`RX_DROPS_REQUEST`]: `(reason, datagrams)`
/// per `reason=count` line, in the device's order. Fails, naming the
/// offending line, on a line that is not `name=number`.
pub fn parse_rx_drops(text: &str) -> Result<Vec<(String, u64)>, GetError> {
    let mut drops = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("errno=") {
            break;
        }
        let (reason, count) = line
            .split_once('=')
            .ok_or_else(|| GetError::NoValue(line.to_owned()))?;
        let count = count
            .parse()
            .map_err(|_| GetError::BadValue(line.to_owned()))?;
        drops.push((reason.to_owned(), count));
    }
    Ok(drops)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test fails by panicking with the reason"
    )]
    use super::*;
    use std::net::Ipv4Addr;

    fn key(byte: u8) -> Key {
        [byte; 32]
    }

    #[test]
    fn hex_round_trips() {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37);
        }
        let text = hex_key(&k);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("00254a6f94b9de"), "{text}");
        assert_eq!(parse_hex_key(&text), Some(k));
        assert_eq!(parse_hex_key(&text.to_uppercase()), Some(k));
        assert_eq!(parse_hex_key(&text[..62]), None);
        assert_eq!(parse_hex_key(&format!("{}zz", &text[..62])), None);
        assert_eq!(parse_hex_key(&format!("{}+1", &text[..62])), None);
    }

    #[test]
    fn allowed_ip_prefix_is_bounded_by_family() {
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0));
        assert_eq!(AllowedIp::new(v4, 24).unwrap().to_string(), "192.0.2.0/24");
        assert!(AllowedIp::new(v4, 33).is_none());
        let v6: IpAddr = "2001:db8::".parse().unwrap();
        assert_eq!(
            AllowedIp::new(v6, 128).unwrap().to_string(),
            "2001:db8::/128"
        );
        assert!(AllowedIp::new(v6, 129).is_none());
    }

    #[test]
    fn empty_request_is_just_the_header() {
        assert_eq!(SetRequest::new().render(), "set=1\n\n");
    }

    #[test]
    fn renders_the_exact_set_text() {
        let request = SetRequest::new()
            .private_key(key(0xab))
            .listen_port(51820)
            .replace_peers()
            .peer(
                PeerConfig::new(key(0x01))
                    .endpoint("198.18.0.2:51821".parse().unwrap())
                    .persistent_keepalive(25)
                    .replace_allowed_ips()
                    .allowed_ip(AllowedIp::new("192.0.2.2".parse().unwrap(), 32).unwrap())
                    .allowed_ip(AllowedIp::new("198.51.100.0".parse().unwrap(), 24).unwrap()),
            )
            .peer(PeerConfig::new(key(0xfe)));
        let expected = format!(
            "set=1\n\
             private_key={}\n\
             listen_port=51820\n\
             replace_peers=true\n\
             public_key={}\n\
             endpoint=198.18.0.2:51821\n\
             persistent_keepalive_interval=25\n\
             replace_allowed_ips=true\n\
             allowed_ip=192.0.2.2/32\n\
             allowed_ip=198.51.100.0/24\n\
             public_key={}\n\
             \n",
            "ab".repeat(32),
            "01".repeat(32),
            "fe".repeat(32),
        );
        assert_eq!(request.render(), expected);
    }

    #[test]
    fn ipv6_endpoint_is_bracketed() {
        let text = SetRequest::new()
            .peer(PeerConfig::new(key(2)).endpoint("[2001:db8::1]:51820".parse().unwrap()))
            .render();
        assert!(text.contains("\nendpoint=[2001:db8::1]:51820\n"), "{text}");
    }

    /// The answer (patched) boringtun gave to `get=1` in the interop test
    /// (`tests/wg_interop.rs`), its private key replaced.
    const GET_SAMPLE: &str = "\
private_key=0800000000000000000000000000000000000000000000000000000000000040
listen_port=51820
public_key=62c87dfee68cb3a88150d53dd9643cea83beaa6f8a3395a069768ed5b123f770
endpoint=198.18.0.2:51821
allowed_ip=192.0.2.2/32
last_handshake_time_sec=1796188800
last_handshake_time_nsec=58972703
rx_bytes=420
tx_bytes=420
errno=0

";

    #[test]
    fn parses_a_captured_get_answer() {
        let peers = parse_get(GET_SAMPLE).unwrap();
        assert_eq!(
            peers,
            vec![PeerState {
                public_key: parse_hex_key(
                    "62c87dfee68cb3a88150d53dd9643cea83beaa6f8a3395a069768ed5b123f770"
                )
                .unwrap(),
                endpoint: Some("198.18.0.2:51821".parse().unwrap()),
                last_handshake: Some(UNIX_EPOCH + Duration::new(1_796_188_800, 58_972_703)),
                rx_bytes: 420,
                tx_bytes: 420,
            }]
        );
        assert_eq!(parse_errno(GET_SAMPLE), Some(0));
    }

    #[test]
    fn handshake_fields_belong_to_their_own_peer() {
        // Two peers; only the first has shaken hands.
        let text = format!(
            "public_key={}\nlast_handshake_time_sec=3\nlast_handshake_time_nsec=250000000\n\
             rx_bytes=1\ntx_bytes=2\npublic_key={}\npersistent_keepalive_interval=25\n\
             rx_bytes=0\ntx_bytes=148\nerrno=0\n\n",
            "22".repeat(32),
            "33".repeat(32)
        );
        let peers = parse_get(&text).unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(
            peers[0].last_handshake,
            Some(UNIX_EPOCH + Duration::new(3, 250_000_000))
        );
        let now = UNIX_EPOCH + Duration::from_secs(10);
        assert_eq!(
            peers[0].handshake_age(now),
            Some(Duration::new(6, 750_000_000))
        );
        assert_eq!(peers[1].handshake_age(now), None);
        assert_eq!((peers[0].rx_bytes, peers[0].tx_bytes), (1, 2));
        assert_eq!(peers[1].public_key, key(0x33));
        assert_eq!(peers[1].last_handshake, None);
        assert_eq!((peers[1].rx_bytes, peers[1].tx_bytes), (0, 148));
    }

    #[test]
    fn zero_handshake_time_means_none() {
        let text = format!(
            "public_key={}\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nerrno=0\n\n",
            "44".repeat(32)
        );
        assert_eq!(parse_get(&text).unwrap()[0].last_handshake, None);
    }

    #[test]
    fn rejects_malformed_values() {
        let err = parse_get("public_key=nothex\n").unwrap_err();
        assert!(err.to_string().contains("nothex"), "{err}");
        let text = format!("public_key={}\nrx_bytes=-1\n", "55".repeat(32));
        assert_eq!(
            parse_get(&text).unwrap_err(),
            GetError::BadValue("rx_bytes=-1".to_owned())
        );
        assert_eq!(
            parse_get("garbage\n").unwrap_err(),
            GetError::NoValue("garbage".to_owned())
        );
    }

    #[test]
    fn errno_is_read_from_the_last_line() {
        assert_eq!(parse_errno("errno=0\n\n"), Some(0));
        assert_eq!(parse_errno("errno=-22\n\n"), Some(-22));
        assert_eq!(parse_errno("listen_port=1\n"), None);
    }

    #[test]
    fn rx_drops_read_in_order_and_bad_lines_are_named() {
        assert_eq!(
            parse_rx_drops("auth=3\nreplay=0\nerrno=0\n\n").unwrap(),
            vec![("auth".to_owned(), 3), ("replay".to_owned(), 0)]
        );
        assert_eq!(
            parse_rx_drops("auth=x\n").unwrap_err(),
            GetError::BadValue("auth=x".to_owned())
        );
        assert_eq!(
            parse_rx_drops("auth\n").unwrap_err(),
            GetError::NoValue("auth".to_owned())
        );
    }
}
