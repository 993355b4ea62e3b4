//! WireGuard interfaces: a [`WgDevice`] owns a boringtun device (a TUN
//! interface plus its UDP sockets and worker thread) in the calling process;
//! [`Uapi`] configures any WireGuard interface over the standard UAPI socket
//! `/var/run/wireguard/<ifname>.sock`, so `wg show <ifname>` works on ours
//! too. The daemon runs its device in a process of its own ([`process`]).
//!
//! The interface and its sockets live in the network namespace of the thread
//! that calls [`WgDevice::create`]. The UAPI socket path is not per network
//! namespace, so interface names must be unique on the machine.

#[cfg(test)]
mod offload_tests;
pub mod process;
pub mod uapi;

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use boringtun::device::{DeviceConfig, DeviceHandle};
use boringtun::x25519::{PublicKey, StaticSecret};

use crate::limits::MAX_IFNAME;

pub use uapi::{AllowedIp, PeerConfig, PeerState, SetRequest};

/// A Curve25519 key (private or public), raw bytes.
pub type Key = [u8; 32];

/// Where WireGuard implementations put their UAPI sockets.
pub const UAPI_DIR: &str = "/var/run/wireguard";

/// How long a UAPI exchange may take before we give up.
const UAPI_TIMEOUT: Duration = Duration::from_secs(5);

/// What can go wrong creating or driving a [`WgDevice`].
#[derive(Debug, thiserror::Error)]
pub enum WgError {
    /// The interface name is empty, too long, or has `/` or whitespace.
    #[error("invalid WireGuard interface name `{0}`")]
    InvalidName(String),
    /// boringtun could not create the device (TUN, sockets or UAPI listener).
    #[error("creating WireGuard interface `{ifname}`: {source}")]
    Create {
        /// The interface.
        ifname: String,
        /// boringtun's reason.
        #[source]
        source: boringtun::device::Error,
    },
    /// Talking to the UAPI socket failed.
    #[error("UAPI socket {}: {source}", path.display())]
    Socket {
        /// The socket.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// The device answered a request with a non-zero `errno`.
    #[error("UAPI socket {}: request rejected with errno={errno}", path.display())]
    Rejected {
        /// The socket.
        path: PathBuf,
        /// The errno it reported.
        errno: i32,
    },
    /// The answer did not follow the protocol.
    #[error("UAPI socket {}: unreadable answer: {detail}", path.display())]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

/// A private key and its public key.
#[derive(Clone)]
pub struct KeyPair {
    /// The private key (clamped, as `wg genkey` makes them).
    pub private: Key,
    /// The matching public key.
    pub public: Key,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &uapi::hex_key(&self.public))
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh key pair from the thread-local CSPRNG.
    #[must_use]
    pub fn generate() -> Self {
        Self::from_private(rand::random())
    }

    /// The pair for `private` (clamped first).
    #[must_use]
    pub fn from_private(mut private: Key) -> Self {
        private[0] &= 0b1111_1000;
        private[31] &= 0b0111_1111;
        private[31] |= 0b0100_0000;
        Self {
            public: public_key(&private),
            private,
        }
    }
}

/// Serde for a [`Key`] as WireGuard writes keys: standard base64 (what
/// `wg genkey` prints), so state files and JSON output read like `wg show`.
pub mod base64_key {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{de, Deserialize, Deserializer, Serializer};

    use super::Key;

    /// Writes `key` as base64.
    pub fn serialize<S: Serializer>(key: &Key, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(key))
    }

    /// Reads a base64 key of exactly 32 bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(de::Error::custom)?;
        Key::try_from(bytes.as_slice())
            .map_err(|_| de::Error::custom(format!("a key has 32 bytes, not {}", bytes.len())))
    }
}

/// The public key of a private key.
#[must_use]
pub fn public_key(private: &Key) -> Key {
    PublicKey::from(&StaticSecret::from(*private)).to_bytes()
}

/// A client of a WireGuard interface's UAPI socket (any implementation:
/// boringtun in this or another process, wireguard-go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uapi {
    socket: PathBuf,
}

impl Uapi {
    /// The client for interface `ifname` (`/var/run/wireguard/<ifname>.sock`).
    #[must_use]
    pub fn new(ifname: &str) -> Self {
        Self {
            socket: WgDevice::socket_path(ifname),
        }
    }

    /// The socket.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Applies `request` (a UAPI `set=1`); fails unless the device answers
    /// `errno=0`.
    pub fn configure(&self, request: &SetRequest) -> Result<(), WgError> {
        let answer = self.exchange(&request.render())?;
        self.check_errno(&answer)
    }

    /// The peers as the device reports them (UAPI `get=1`).
    pub fn status(&self) -> Result<Vec<PeerState>, WgError> {
        let answer = self.exchange("get=1\n\n")?;
        self.check_errno(&answer)?;
        uapi::parse_get(&answer).map_err(|e| self.protocol(e.to_string()))
    }

    /// Received datagrams the device dropped, `(reason, count)` per reason
    /// (vlnet's boringtun only: other implementations refuse the command).
    pub fn rx_drops(&self) -> Result<Vec<(String, u64)>, WgError> {
        let answer = self.exchange(uapi::RX_DROPS_REQUEST)?;
        self.check_errno(&answer)?;
        uapi::parse_rx_drops(&answer).map_err(|e| self.protocol(e.to_string()))
    }

    fn protocol(&self, detail: String) -> WgError {
        WgError::Protocol {
            path: self.socket.clone(),
            detail,
        }
    }

    fn check_errno(&self, answer: &str) -> Result<(), WgError> {
        match uapi::parse_errno(answer) {
            Some(0) => Ok(()),
            Some(errno) => Err(WgError::Rejected {
                path: self.socket.clone(),
                errno,
            }),
            None => Err(self.protocol(format!("no errno line in {answer:?}"))),
        }
    }

    /// Sends `request` and reads the answer up to and including its `errno=`
    /// line.
    fn exchange(&self, request: &str) -> Result<String, WgError> {
        let io_err = |source| WgError::Socket {
            path: self.socket.clone(),
            source,
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(io_err)?;
        stream
            .set_read_timeout(Some(UAPI_TIMEOUT))
            .map_err(io_err)?;
        stream
            .set_write_timeout(Some(UAPI_TIMEOUT))
            .map_err(io_err)?;
        stream.write_all(request.as_bytes()).map_err(io_err)?;
        let mut reader = BufReader::new(stream);
        let mut answer = String::new();
        loop {
            let start = answer.len();
            if reader.read_line(&mut answer).map_err(io_err)? == 0 {
                return Ok(answer); // EOF: the caller finds no errno line
            }
            if answer[start..].starts_with("errno=") {
                return Ok(answer);
            }
        }
    }
}

/// An in-process WireGuard interface; removed (worker stopped, UAPI socket
/// deleted) on drop.
pub struct WgDevice {
    ifname: String,
    uapi: Uapi,
    handle: Option<DeviceHandle>,
}

impl std::fmt::Debug for WgDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgDevice")
            .field("ifname", &self.ifname)
            .field("socket", &self.uapi.socket)
            .finish_non_exhaustive()
    }
}

impl WgDevice {
    /// Creates the TUN interface `ifname` (down, no address) in the calling
    /// thread's network namespace, with one worker thread and its UAPI socket.
    pub fn create(ifname: &str) -> Result<Self, WgError> {
        check_ifname(ifname)?;
        let config = DeviceConfig {
            n_threads: 1,
            use_connected_socket: true,
            use_multi_queue: false,
            uapi_fd: -1,
            offload: true,
        };
        let handle = DeviceHandle::new(ifname, config).map_err(|source| WgError::Create {
            ifname: ifname.to_owned(),
            source,
        })?;
        Ok(Self {
            ifname: ifname.to_owned(),
            uapi: Uapi::new(ifname),
            handle: Some(handle),
        })
    }

    /// `/var/run/wireguard/<ifname>.sock`.
    #[must_use]
    pub fn socket_path(ifname: &str) -> PathBuf {
        Path::new(UAPI_DIR).join(format!("{ifname}.sock"))
    }

    /// The interface name.
    #[must_use]
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The UAPI socket.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.uapi.socket
    }

    /// Applies `request` (a UAPI `set=1`).
    pub fn configure(&self, request: &SetRequest) -> Result<(), WgError> {
        self.uapi.configure(request)
    }

    /// Blocks until the device stops. boringtun stops it on SIGTERM or
    /// SIGINT (it takes both over, through a signalfd, when created).
    pub fn wait(&mut self) {
        if let Some(handle) = self.handle.as_mut() {
            handle.wait();
        }
    }

    /// The peers as the device reports them.
    pub fn status(&self) -> Result<Vec<PeerState>, WgError> {
        self.uapi.status()
    }

    /// Received datagrams the device dropped, by reason.
    pub fn rx_drops(&self) -> Result<Vec<(String, u64)>, WgError> {
        self.uapi.rx_drops()
    }
}

/// Refuses names Linux would not take: empty, too long, `/` or whitespace.
pub fn check_ifname(ifname: &str) -> Result<(), WgError> {
    if ifname.is_empty()
        || ifname.len() > MAX_IFNAME
        || ifname.bytes().any(|b| b == b'/' || b.is_ascii_whitespace())
    {
        return Err(WgError::InvalidName(ifname.to_owned()));
    }
    Ok(())
}

impl Drop for WgDevice {
    fn drop(&mut self) {
        if let Some(mut handle) = self.handle.take() {
            handle.clean();
            // Dropping the handle tells the worker to exit; the TUN interface
            // goes when the worker releases it.
            drop(handle);
        }
        let _ = std::fs::remove_file(&self.uapi.socket);
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test fails by panicking with the reason"
    )]
    use super::*;

    #[test]
    fn key_pairs_are_clamped_and_match() {
        let pair = KeyPair::generate();
        assert_eq!(pair.private[0] & 7, 0);
        assert_eq!(pair.private[31] & 0xc0, 0x40);
        assert_eq!(pair.public, public_key(&pair.private));
        assert_ne!(pair.public, KeyPair::generate().public);
    }

    /// RFC 7748 §6.1: Alice's key pair.
    #[test]
    fn public_key_matches_rfc7748() {
        let private =
            uapi::parse_hex_key("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap();
        let public = uapi::hex_key(&public_key(&private));
        assert_eq!(
            public,
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn debug_hides_the_private_key() {
        let pair = KeyPair::from_private([7; 32]);
        let text = format!("{pair:?}");
        assert!(!text.contains(&uapi::hex_key(&pair.private)), "{text}");
    }

    #[test]
    fn rejects_bad_interface_names() {
        for name in ["", "a-very-long-ifname", "wg/0", "wg 0"] {
            assert!(
                matches!(WgDevice::create(name), Err(WgError::InvalidName(_))),
                "{name}"
            );
        }
    }
}
