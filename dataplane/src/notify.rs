//! systemd's readiness protocol (`sd_notify(3)`): datagrams of `KEY=VALUE`
//! lines to the socket in `$NOTIFY_SOCKET` (a path, or an abstract name
//! after `@`). Without the variable (not started by systemd as
//! `Type=notify`) every call does nothing.

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The variable naming the socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (lines such as `READY=1`, `STATUS=…`) to systemd; `Ok(false)`
/// when nobody listens for it.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(false);
    };
    let addr = address(&target)?;
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(true)
}

/// Sends `state`, logging (not failing) when it cannot.
pub fn tell(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!(error = %e, state, "cannot notify systemd");
    }
}

fn address(target: &OsString) -> io::Result<SocketAddr> {
    let bytes = target.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(target),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{NOTIFY_SOCKET}={} is neither a path nor @name",
                target.display()
            ),
        )),
    }
}

/// How often to send `WATCHDOG=1`: half the interval systemd asks for in
/// `$WATCHDOG_USEC` (when `$WATCHDOG_PID`, if set, is this process).
#[must_use]
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        let path = address(&OsString::from("/run/systemd/notify")).unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let abstract_name = address(&OsString::from("@sd/notify")).unwrap();
        assert_eq!(abstract_name.as_abstract_name(), Some(&b"sd/notify"[..]));
        assert!(address(&OsString::from("relative")).is_err());
    }

    #[test]
    fn a_datagram_reaches_the_socket() {
        let dir = std::env::temp_dir().join(format!("vlt-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let addr = address(&path.clone().into_os_string()).unwrap();
        UnixDatagram::unbound()
            .unwrap()
            .send_to_addr(b"READY=1\nSTATUS=up", &addr)
            .unwrap();
        let mut buf = [0; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
