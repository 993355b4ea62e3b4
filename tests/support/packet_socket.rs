//! Raw frames in and out of an interface (`AF_PACKET`), for tests that need
//! exact bytes on the wire.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// An `AF_PACKET` socket on one interface of the calling thread's namespace.
pub struct PacketSocket(OwnedFd);

impl PacketSocket {
    /// Binds to the interface `name` of the calling thread's namespace.
    pub fn bind_named(name: &str) -> Self {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: `c` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
        assert_ne!(ifindex, 0, "no interface {name}");
        Self::bind(ifindex)
    }

    /// Binds to `ifindex` (all protocols), with a 2 s receive timeout.
    pub fn bind(ifindex: u32) -> Self {
        let proto = u16::try_from(libc::ETH_P_ALL).unwrap().to_be();
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd was just opened and is owned here.
        let sock = Self(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = u16::try_from(libc::AF_PACKET).unwrap();
        addr.sll_protocol = proto;
        addr.sll_ifindex = i32::try_from(ifindex).unwrap();
        // SAFETY: addr is a valid sockaddr_ll of the given length.
        let rc = unsafe {
            libc::bind(
                fd,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: valid option buffer.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        sock
    }

    /// Sends one frame as is.
    pub fn send(&self, frame: &[u8]) {
        // SAFETY: buffer valid for its length.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            usize::try_from(n).ok(),
            Some(frame.len()),
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The next received frame, or `None` after the 2 s receive timeout.
    pub fn try_recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        // SAFETY: buffer valid for its length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = usize::try_from(n).ok().filter(|n| *n > 0)?;
        buf.truncate(n);
        Some(buf)
    }

    /// Lets `bytes` of frames wait in the receive queue (a burst of flood
    /// copies overflows the default).
    pub fn set_rcvbuf(&self, bytes: usize) {
        let bytes = i32::try_from(bytes).unwrap();
        // SAFETY: valid option buffer.
        let rc = unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const bytes).cast(),
                size_of::<i32>() as u32,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
    }

    /// The next `n` VXLAN packets (IPv4, UDP port 4789) received, other
    /// frames skipped; panics if they do not all come within the timeout.
    pub fn recv_vxlan(&self, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let frame = self
                .try_recv()
                .unwrap_or_else(|| panic!("{} of {n} VXLAN packets arrived", out.len()));
            let vxlan = frame.len() > 50
                && frame[12..14] == [0x08, 0x00]
                && frame[23] == 17
                && frame[36..38] == 4789u16.to_be_bytes();
            if vxlan {
                out.push(frame);
            }
        }
        out
    }

    /// Next received frame that ends with `suffix`, within the timeout.
    pub fn recv_ending_with(&self, suffix: &[u8]) -> Vec<u8> {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let mut buf = vec![0u8; 65536];
        while std::time::Instant::now() < deadline {
            // SAFETY: buffer valid for its length.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let n = usize::try_from(n).unwrap_or(0);
            if n > 0 && buf[..n].ends_with(suffix) {
                return buf[..n].to_vec();
            }
        }
        panic!("no frame carrying the inner frame arrived");
    }
}
