// Copyright (c) 2019 Cloudflare, Inc. All rights reserved.
// SPDX-License-Identifier: BSD-3-Clause

//! vlnet patch: the encrypted packets of one super-packet, gathered in one
//! buffer and sent to the peer with one `sendmsg` carrying `UDP_SEGMENT`
//! (UDP GSO, Linux 4.18+): the kernel's UDP/IP path and the underlay are
//! crossed once per batch instead of once per packet. Where the kernel
//! refuses it (`EIO` without checksum offload on the way out, `EINVAL`),
//! the process falls back to one `send` per packet for good.

use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{SockAddr, Socket};

/// Most bytes in one batch: under 64 KiB less the IPv6 and UDP headers.
pub const MAX_BATCH_BYTES: usize = 65_000;
/// Most packets in one batch (the kernel's `UDP_MAX_SEGMENTS` is 64 or more).
pub const MAX_SEGMENTS: usize = 64;
/// Room after the batch for one more encrypted packet of any size.
const SPARE: usize = 1 << 16;
/// The first byte of a WireGuard transport data message (type 4).
const DATA_MESSAGE: u8 = 4;

/// Set once the kernel refused a UDP GSO send: from then on, one `send` per
/// packet.
static GSO_REFUSED: AtomicBool = AtomicBool::new(false);

/// Where a peer's packets go.
pub enum Target<'a> {
    /// The peer's connected socket.
    Connected(&'a Socket),
    /// The listening socket, with the peer's address.
    To(&'a Socket, SockAddr),
    /// Nowhere (the peer has no endpoint yet).
    Nowhere,
}

impl Target<'_> {
    /// Sends one packet.
    fn send(&self, packet: &[u8]) {
        let _: io::Result<usize> = match self {
            Target::Connected(sock) => sock.send(packet),
            Target::To(sock, addr) => sock.send_to(packet, addr),
            Target::Nowhere => {
                tracing::error!("No endpoint");
                return;
            }
        };
    }

    /// Sends `buf` as packets of `seg` bytes (the last may be shorter) with
    /// one `sendmsg`.
    fn send_gso(&self, buf: &[u8], seg: usize) -> io::Result<()> {
        let (sock, addr) = match self {
            Target::Connected(sock) => (*sock, None),
            Target::To(sock, addr) => (*sock, Some(addr)),
            Target::Nowhere => return Ok(()),
        };
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // Room for one cmsghdr and a u16, aligned as cmsghdr wants.
        let mut control = [0u64; 4];
        // SAFETY: every pointer in `msg` points into locals that outlive the
        // call; the control buffer is large enough for CMSG_SPACE(2) (checked
        // below) and suitably aligned (u64).
        unsafe {
            let space = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize;
            debug_assert!(space <= std::mem::size_of_val(&control));
            let mut msg: libc::msghdr = std::mem::zeroed();
            if let Some(addr) = addr {
                msg.msg_name = addr.as_ptr() as *mut libc::c_void;
                msg.msg_namelen = addr.len();
            }
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, seg as u16);
            if libc::sendmsg(sock.as_raw_fd(), &msg, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Encrypted packets waiting to go to one peer: all of one size but the
/// last, which may be shorter (what UDP GSO sends).
pub struct Batch {
    buf: Box<[u8]>,
    len: usize,
    seg: usize,
    count: usize,
    /// A shorter packet ended the batch.
    closed: bool,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            buf: vec![0u8; MAX_BATCH_BYTES + SPARE].into_boxed_slice(),
            len: 0,
            seg: 0,
            count: 0,
            closed: false,
        }
    }
}

impl Batch {
    /// Where the next encrypted packet is to be written (at least 64 KiB).
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// Takes the `n` bytes just written at [`Batch::spare`]: a data message
    /// joins the batch (sent first if it cannot join), anything else (a
    /// handshake) goes out at once.
    pub fn push(&mut self, n: usize, target: &Target<'_>) {
        let start = self.len;
        if self.buf[start] != DATA_MESSAGE {
            target.send(&self.buf[start..start + n]);
            return;
        }
        let fits = self.count == 0
            || (!self.closed
                && n <= self.seg
                && start + n <= MAX_BATCH_BYTES
                && self.count < MAX_SEGMENTS);
        if !fits {
            self.flush(target);
            self.buf.copy_within(start..start + n, 0);
        }
        if self.count == 0 {
            self.seg = n;
        }
        self.closed = n < self.seg;
        self.len += n;
        self.count += 1;
    }

    /// Sends what is gathered.
    pub fn flush(&mut self, target: &Target<'_>) {
        let batch = &self.buf[..self.len];
        if self.count > 1 && !GSO_REFUSED.load(Ordering::Relaxed) {
            match target.send_gso(batch, self.seg) {
                Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
                    tracing::warn!(message = "UDP GSO refused, sending packets one by one", error = ?e);
                    GSO_REFUSED.store(true, Ordering::Relaxed);
                    batch.chunks(self.seg).for_each(|p| target.send(p));
                }
                _ => {}
            }
        } else if self.count > 0 {
            batch.chunks(self.seg).for_each(|p| target.send(p));
        }
        self.len = 0;
        self.count = 0;
        self.closed = false;
    }
}

/// Socket buffer size asked for (wireguard-go asks for 7 MiB): a UDP GSO
/// batch is up to 64 KiB at once, which the default 208 KiB receive buffer
/// drops after a few batches when the reader lags.
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// Grows `sock`'s send and receive buffers to [`SOCKET_BUFFER`] (past
/// `net.core.rmem_max` with `CAP_NET_ADMIN`, else as far as allowed).
pub fn grow_buffers(sock: &Socket) {
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if setsockopt_int(sock, libc::SOL_SOCKET, force, SOCKET_BUFFER).is_err() {
            let _ = setsockopt_int(sock, libc::SOL_SOCKET, plain, SOCKET_BUFFER);
        }
    }
}

/// Asks the kernel to hand over UDP GSO batches whole (`UDP_GRO`, Linux
/// 5.0+); [`recv`] then reports their segment size.
pub fn enable_gro(sock: &Socket) {
    let _ = setsockopt_int(sock, libc::SOL_UDP, libc::UDP_GRO, 1);
}

fn setsockopt_int(sock: &Socket, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` lives across the call and its size is passed.
    let ret = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives from a connected socket into `buf`: the byte count and the size
/// of each packet in it (the `UDP_GRO` segment size, or the byte count for
/// a single packet).
pub fn recv(sock: &Socket, buf: &mut [u8]) -> io::Result<(usize, usize)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: every pointer in `msg` points into locals that outlive the
    // call, with their sizes; the kernel writes at most `msg_controllen`
    // bytes of control messages, which are read back with the CMSG macros.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        let mut seg = n;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int);
                if size > 0 {
                    seg = size as usize;
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok((n, seg.max(1)))
    }
}
