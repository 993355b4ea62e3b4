// Copyright (c) 2019 Cloudflare, Inc. All rights reserved.
// SPDX-License-Identifier: BSD-3-Clause

use super::vnet::{OFFLOADS, TUN_F_UDP_TUNNEL_GSO, VNET_HDR_LEN};
use super::Error;
use libc::*;
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};

const TUNSETIFF: u64 = 0x4004_54ca;

/// vlnet patch: the virtio-net header put before every packet written to a
/// TUN opened with offloads: no GSO, no checksum to complete.
static NO_OFFLOAD_HDR: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

#[repr(C)]
union IfrIfru {
    ifru_addr: sockaddr,
    ifru_addr_v4: sockaddr_in,
    ifru_addr_v6: sockaddr_in,
    ifru_dstaddr: sockaddr,
    ifru_broadaddr: sockaddr,
    ifru_flags: c_short,
    ifru_metric: c_int,
    ifru_mtu: c_int,
    ifru_phys: c_int,
    ifru_media: c_int,
    ifru_intval: c_int,
    //ifru_data: caddr_t,
    //ifru_devmtu: ifdevmtu,
    //ifru_kpi: ifkpi,
    ifru_wake_flags: u32,
    ifru_route_refcnt: u32,
    ifru_cap: [c_int; 2],
    ifru_functional_type: u32,
}

#[repr(C)]
pub struct ifreq {
    ifr_name: [c_uchar; IFNAMSIZ],
    ifr_ifru: IfrIfru,
}

#[derive(Default, Debug)]
pub struct TunSocket {
    fd: RawFd,
    name: String,
    /// vlnet patch: opened with `IFF_VNET_HDR` (see [`TunSocket::open`]).
    vnet_hdr: bool,
    /// vlnet patch: the `TUNSETOFFLOAD` flags the kernel took.
    offloads: u32,
}

impl Drop for TunSocket {
    fn drop(&mut self) {
        unsafe { close(self.fd) };
    }
}

impl AsRawFd for TunSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl TunSocket {
    fn write(&self, buf: &[u8]) -> usize {
        if self.vnet_hdr {
            // vlnet patch: every packet written needs its virtio-net header.
            let iov = [
                iovec {
                    iov_base: NO_OFFLOAD_HDR.as_ptr() as *mut c_void,
                    iov_len: VNET_HDR_LEN,
                },
                iovec {
                    iov_base: buf.as_ptr() as *mut c_void,
                    iov_len: buf.len(),
                },
            ];
            return match unsafe { writev(self.fd, iov.as_ptr(), 2) } {
                -1 => 0,
                n => (n as usize).saturating_sub(VNET_HDR_LEN),
            };
        }
        match unsafe { write(self.fd, buf.as_ptr() as _, buf.len() as _) } {
            -1 => 0,
            n => n as usize,
        }
    }

    pub fn new(name: &str) -> Result<TunSocket, Error> {
        Self::open(name, false)
    }

    /// vlnet patch: whether packets read carry a virtio-net header first
    /// ([`super::vnet::VnetHdr`]).
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// vlnet patch: whether UDP-tunnel GSO super-packets may be written
    /// (see [`super::gro`]).
    pub fn tunnel_gso(&self) -> bool {
        self.offloads & TUN_F_UDP_TUNNEL_GSO != 0
    }

    /// vlnet patch: writes `buf`, its virtio-net header included.
    pub fn write_raw(&self, buf: &[u8]) -> usize {
        match unsafe { write(self.fd, buf.as_ptr() as _, buf.len() as _) } {
            -1 => 0,
            n => n as usize,
        }
    }

    /// vlnet patch: [`TunSocket::new`], and with `offload` the TUN is opened
    /// with `IFF_VNET_HDR` (header of [`VNET_HDR_LEN`] bytes) and given the
    /// first of [`OFFLOADS`] the kernel takes: reads then return GSO
    /// super-packets (up to 64 KiB) and partial checksums, which the reader
    /// segments and completes ([`super::gso`]).
    pub fn open(name: &str, offload: bool) -> Result<TunSocket, Error> {
        // If the provided name appears to be a FD, use that.
        let provided_fd = name.parse::<i32>();
        if let Ok(fd) = provided_fd {
            return Ok(TunSocket {
                fd,
                name: name.to_string(),
                vnet_hdr: false,
                offloads: 0,
            });
        }

        let fd = match unsafe { open(b"/dev/net/tun\0".as_ptr() as _, O_RDWR) } {
            -1 => return Err(Error::Socket(io::Error::last_os_error())),
            fd => fd,
        };
        let iface_name = name.as_bytes();
        let mut ifr = ifreq {
            ifr_name: [0; IFNAMSIZ],
            ifr_ifru: IfrIfru {
                ifru_flags: (IFF_TUN
                    | IFF_NO_PI
                    | IFF_MULTI_QUEUE
                    | if offload { IFF_VNET_HDR } else { 0 }) as _,
            },
        };

        if iface_name.len() >= ifr.ifr_name.len() {
            return Err(Error::InvalidTunnelName);
        }

        ifr.ifr_name[..iface_name.len()].copy_from_slice(iface_name);

        if unsafe { ioctl(fd, TUNSETIFF as _, &ifr) } < 0 {
            let e = io::Error::last_os_error();
            unsafe { close(fd) };
            return Err(Error::IOCtl(e));
        }

        let name = name.to_string();
        let mut tun = TunSocket {
            fd,
            name,
            vnet_hdr: offload,
            offloads: 0,
        };
        if offload {
            let len = VNET_HDR_LEN as c_int;
            if unsafe { ioctl(fd, TUNSETVNETHDRSZ as _, &len) } < 0 {
                return Err(Error::IOCtl(io::Error::last_os_error()));
            }
            let taken = OFFLOADS
                .iter()
                .find(|&&flags| unsafe { ioctl(fd, TUNSETOFFLOAD as _, flags as c_ulong) } == 0);
            tracing::info!(message = "TUN offloads", flags = ?taken);
            tun.offloads = taken.copied().unwrap_or(0);
        }
        Ok(tun)
    }

    pub fn set_non_blocking(self) -> Result<TunSocket, Error> {
        match unsafe { fcntl(self.fd, F_GETFL) } {
            -1 => Err(Error::FCntl(io::Error::last_os_error())),
            flags => match unsafe { fcntl(self.fd, F_SETFL, flags | O_NONBLOCK) } {
                -1 => Err(Error::FCntl(io::Error::last_os_error())),
                _ => Ok(self),
            },
        }
    }

    pub fn name(&self) -> Result<String, Error> {
        Ok(self.name.clone())
    }

    /// Get the current MTU value
    pub fn mtu(&self) -> Result<usize, Error> {
        let provided_fd = self.name.parse::<i32>();
        if provided_fd.is_ok() {
            return Ok(1500);
        }

        let fd = match unsafe { socket(AF_INET, SOCK_STREAM, IPPROTO_IP) } {
            -1 => return Err(Error::Socket(io::Error::last_os_error())),
            fd => fd,
        };

        let name = self.name()?;
        let iface_name: &[u8] = name.as_ref();
        let mut ifr = ifreq {
            ifr_name: [0; IF_NAMESIZE],
            ifr_ifru: IfrIfru { ifru_mtu: 0 },
        };

        ifr.ifr_name[..iface_name.len()].copy_from_slice(iface_name);

        if unsafe { ioctl(fd, SIOCGIFMTU as _, &ifr) } < 0 {
            return Err(Error::IOCtl(io::Error::last_os_error()));
        }

        unsafe { close(fd) };

        Ok(unsafe { ifr.ifr_ifru.ifru_mtu } as _)
    }

    pub fn write4(&self, src: &[u8]) -> usize {
        self.write(src)
    }

    pub fn write6(&self, src: &[u8]) -> usize {
        self.write(src)
    }

    pub fn read<'a>(&self, dst: &'a mut [u8]) -> Result<&'a mut [u8], Error> {
        match unsafe { read(self.fd, dst.as_mut_ptr() as _, dst.len()) } {
            -1 => Err(Error::IfaceRead(io::Error::last_os_error())),
            n => Ok(&mut dst[..n as usize]),
        }
    }
}
