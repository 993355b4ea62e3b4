//! wireguard-go run by hand, as an operator without the kernel module
//! would: `wireguard-go -f <ifname>` inside a host namespace (it creates the
//! TUN there and listens on `/var/run/wireguard/<ifname>.sock`), keys from
//! `wg genkey` and `wg pubkey`, the tunnel set with `wg set`, its address and
//! MTU with `ip`.
//!
//! [`WireguardGo`] kills the process when dropped, which takes the TUN with
//! it, and removes the UAPI socket, which a killed wireguard-go leaves
//! behind. That socket path is machine-wide, not per namespace: give every
//! interface a unique name ([`unique_ifname`](crate::primitives::netns::unique_ifname)).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use vlnet_dataplane::wg::WgDevice;

use crate::primitives::netns::{ChildGuard, LabError, NetNs};

/// The tunnel MTU `wg-quick` picks on a 1500-byte underlay (1500 − 80).
pub const WG_MTU: u32 = 1420;
/// How long [`WireguardGo::start`] waits for the UAPI socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll period while waiting for it.
const POLL: Duration = Duration::from_millis(20);

/// The one peer of a [`WireguardGo`] interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    /// Its public key, base64 (as `wg pubkey` prints it).
    pub public_key: String,
    /// Where it listens on the underlay.
    pub endpoint: SocketAddrV4,
    /// Its tunnel address: `allowed-ips <addr>/32`.
    pub tunnel_addr: Ipv4Addr,
}

/// A wireguard-go interface running in a namespace, with its own key pair.
#[derive(Debug)]
pub struct WireguardGo {
    ns: NetNs,
    ifname: String,
    private_key: String,
    public_key: String,
    socket: PathBuf,
    child: ChildGuard,
}

impl WireguardGo {
    /// Starts `wireguard-go -f <ifname>` in `ns`, waits (≤ 10 s) for its
    /// UAPI socket, and makes a key pair with `wg genkey` / `wg pubkey`.
    /// The interface is down and unconfigured.
    pub fn start(ns: &NetNs, ifname: &str) -> Result<Self, LabError> {
        let socket = WgDevice::socket_path(ifname);
        if socket.exists() {
            return Err(LabError::Invalid(format!(
                "{} exists: interface name `{ifname}` is in use on this machine",
                socket.display()
            )));
        }
        let mut cmd = ns.cmd("wireguard-go");
        cmd.args(["-f", ifname])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = ChildGuard::spawn(&mut cmd)?;
        // From here on the guard owns process and socket.
        let mut wg = Self {
            ns: ns.clone(),
            ifname: ifname.to_owned(),
            private_key: String::new(),
            public_key: String::new(),
            socket,
            child,
        };
        wg.wait_for_socket()?;
        (wg.private_key, wg.public_key) = key_pair(ns)?;
        Ok(wg)
    }

    fn wait_for_socket(&mut self) -> Result<(), LabError> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.socket.exists() {
            if let Some(status) = self.child.try_wait()? {
                return Err(LabError::Failed {
                    command: self.child.command().to_owned(),
                    status: status.to_string(),
                    stderr: "wireguard-go exited before opening its UAPI socket".into(),
                });
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    command: format!(
                        "{} (waiting for {})",
                        self.child.command(),
                        self.socket.display()
                    ),
                    after: START_TIMEOUT,
                });
            }
            thread::sleep(POLL);
        }
        Ok(())
    }

    /// The interface name.
    #[must_use]
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The public key, base64.
    #[must_use]
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// `wg set <ifname> private-key … listen-port <port> peer <key>
    /// endpoint <endpoint> allowed-ips <tunnel addr>/32`.
    pub fn set(&self, listen_port: u16, peer: &WgPeer) -> Result<(), LabError> {
        self.ns
            .run(&[
                "sh",
                "-c",
                "printf '%s\\n' \"$1\" | wg set \"$0\" private-key /dev/stdin listen-port \"$2\" \
                 peer \"$3\" endpoint \"$4\" allowed-ips \"$5\"",
                &self.ifname,
                &self.private_key,
                &listen_port.to_string(),
                &peer.public_key,
                &peer.endpoint.to_string(),
                &format!("{}/32", peer.tunnel_addr),
            ])
            .map(drop)
    }

    /// Gives the interface `addr`/`prefix` and `mtu`, and brings it up.
    pub fn address(&self, addr: Ipv4Addr, prefix: u8, mtu: u32) -> Result<(), LabError> {
        self.ns.run(&[
            "ip",
            "addr",
            "add",
            &format!("{addr}/{prefix}"),
            "dev",
            &self.ifname,
        ])?;
        self.ns
            .run(&[
                "ip",
                "link",
                "set",
                &self.ifname,
                "mtu",
                &mtu.to_string(),
                "up",
            ])
            .map(drop)
    }

    /// The last handshake with the peer whose public key is `public_key`
    /// (`wg show <ifname> latest-handshakes`), in seconds since the epoch;
    /// `None` before the first one.
    pub fn latest_handshake(&self, public_key: &str) -> Result<Option<u64>, LabError> {
        let out = self
            .ns
            .run(&["wg", "show", &self.ifname, "latest-handshakes"])?;
        let epoch = parse_latest_handshake(&out, public_key).ok_or_else(|| LabError::Parse {
            what: format!("wg show {} latest-handshakes", self.ifname),
            detail: format!("no line for peer {public_key} in {out:?}"),
        })?;
        Ok(Some(epoch).filter(|&t| t > 0))
    }
}

/// `(private, public)`, base64, from `wg genkey` and `wg pubkey` in `ns`.
fn key_pair(ns: &NetNs) -> Result<(String, String), LabError> {
    let private = ns.run(&["wg", "genkey"])?.trim().to_owned();
    let public = ns
        .run(&["sh", "-c", "printf '%s\\n' \"$0\" | wg pubkey", &private])?
        .trim()
        .to_owned();
    Ok((private, public))
}

/// The seconds on `public_key`'s line of `wg show … latest-handshakes`
/// (`<key>\t<epoch>` per peer).
fn parse_latest_handshake(out: &str, public_key: &str) -> Option<u64> {
    out.lines().find_map(|l| {
        let (key, epoch) = l.split_once('\t')?;
        (key == public_key).then(|| epoch.trim().parse().ok())?
    })
}

impl Drop for WireguardGo {
    fn drop(&mut self) {
        self.child.kill();
        if let Err(e) = std::fs::remove_file(&self.socket) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("lab: could not remove {}: {e}", self.socket.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_handshake_of_one_peer() {
        let out = "AAAA=\t1700000000\nBBBB=\t0\n";
        assert_eq!(parse_latest_handshake(out, "AAAA="), Some(1_700_000_000));
        assert_eq!(parse_latest_handshake(out, "BBBB="), Some(0));
        assert_eq!(parse_latest_handshake(out, "CCCC="), None);
    }
}
