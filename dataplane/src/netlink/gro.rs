//! Generic receive offload on a link, through the ethtool ioctl (rtnetlink
//! has no request for a device's offload features).
//!
//! A veth runs GRO on what it receives only with the `gro` feature on, and
//! veth starts with it off. Frames that XDP decap redirects into an overlay
//! port arrive at its bridge end one wire segment each: without GRO there,
//! the bridge and the VM handle every segment as its own packet, where the
//! kernel's vxlan device merges them (its GRO cells) first.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `ETHTOOL_SGRO` (`linux/ethtool.h`): set the GRO feature.
const ETHTOOL_SGRO: u32 = 0x0000_002c;

/// `struct ethtool_value` (`linux/ethtool.h`).
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Turns GRO on for `ifname` (in the calling thread's network namespace);
/// a no-op when it is on already.
pub fn enable_gro(ifname: &str) -> io::Result<()> {
    let name = ifname.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not an interface name: {ifname:?}"),
        ));
    }
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned here (closed on drop).
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut value = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: 1,
    };
    // SAFETY: ifreq is plain data; zero is a valid starting value (and
    // leaves the name NUL-terminated, its length checked above).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    req.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: req names the device and points at value, both alive and
    // valid for the call; the kernel reads value and writes nothing back.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &raw mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_the_kernel_could_not_hold_is_refused_before_any_call() {
        for bad in ["", "a-name-of-sixteen", "nul\0inside"] {
            let err = enable_gro(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }
}
