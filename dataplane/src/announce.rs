//! The announce a hypervisor sends after a live migration, for hypervisors
//! that do not: QEMU's `announce-self` RARP (ethertype 0x8035, broadcast,
//! from the VM's MAC), sent into the VM's bridge so that it is flooded to
//! every VTEP, each of which then moves the MAC to this node.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::mac::MacAddr;

/// RARP's ethertype.
pub const ETH_P_RARP: u16 = 0x8035;
/// Ethernet's minimum frame size without FCS.
const MIN_FRAME: usize = 60;

/// The RARP request QEMU sends for `mac` (`qemu_announce_self`): broadcast,
/// "reverse request" (op 3), sender and target hardware address `mac`, no
/// protocol addresses, padded to 60 bytes.
#[must_use]
pub fn rarp_announce(mac: MacAddr) -> [u8; MIN_FRAME] {
    let mut f = [0u8; MIN_FRAME];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac.0);
    f[12..14].copy_from_slice(&ETH_P_RARP.to_be_bytes());
    // htype Ethernet, ptype IPv4, hlen 6, plen 4, op 3 (reverse request).
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 3]);
    f[22..28].copy_from_slice(&mac.0);
    f[32..38].copy_from_slice(&mac.0);
    f
}

/// Sends the announce for `mac` out of interface `ifname` (in the calling
/// thread's namespace).
pub fn announce(ifname: &str, mac: MacAddr) -> io::Result<()> {
    let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {ifname}"),
        ));
    }
    send_frame(ifindex, &rarp_announce(mac))
}

/// Sends `frame` out of interface `ifindex` as is (`AF_PACKET`).
pub fn send_frame(ifindex: u32, frame: &[u8]) -> io::Result<()> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned here (closed on drop).
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zero is a valid starting value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = i32::try_from(ifindex).map_err(io::Error::other)?;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6.min(frame.len())]);
    // SAFETY: buffer and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if usize::try_from(sent).ok() == Some(frame.len()) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announce_is_qemus_rarp() {
        let mac = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let f = rarp_announce(mac);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac.0);
        assert_eq!(&f[12..14], &[0x80, 0x35]);
        assert_eq!(&f[20..22], &[0, 3], "op: reverse request");
        assert_eq!(&f[22..28], &mac.0, "sender hardware address");
        assert_eq!(&f[28..32], &[0; 4], "no sender protocol address");
        assert_eq!(&f[32..38], &mac.0, "target hardware address");
        assert!(f[38..].iter().all(|&b| b == 0));
    }
}
