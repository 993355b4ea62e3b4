// Copyright (c) 2019 Cloudflare, Inc. All rights reserved.
// SPDX-License-Identifier: BSD-3-Clause

//! vlnet patch: the TUN handler when the TUN has offloads
//! (`DeviceConfig::offload`): each read is a packet or a GSO super-packet
//! after its virtio-net header; it is cut into wire packets ([`segment`]),
//! each encrypted with the peer's `Tunn`, and the encrypted packets leave as
//! one UDP GSO batch per super-packet ([`Batch`]). Everything else (peer
//! lookup, endpoint choice, handshakes queued by `encapsulate`) is as in the
//! handler without offloads.

use std::io;
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use super::gso::segment;
use super::udp_gso::{Batch, Target};
use super::vnet::{VnetHdr, VNET_HDR_LEN};
use super::{Action, Device, Error, TunSocket, MAX_ITR};
use crate::noise::{Tunn, TunnResult};

impl Device {
    pub(super) fn register_offload_iface_handler(
        &self,
        iface: Arc<TunSocket>,
    ) -> Result<(), Error> {
        self.queue.new_event(
            iface.as_raw_fd(),
            Box::new(move |d, t| {
                let (udp4, udp6) = match (d.udp4.as_ref(), d.udp6.as_ref()) {
                    (Some(udp4), Some(udp6)) => (udp4, udp6),
                    _ => return Action::Continue,
                };
                let bufs = &mut t.offload;
                for _ in 0..MAX_ITR {
                    let n = match iface.read(&mut bufs.tun[..]) {
                        Ok(packet) => packet.len(),
                        Err(Error::IfaceRead(e)) => {
                            let ek = e.kind();
                            if ek == io::ErrorKind::Interrupted || ek == io::ErrorKind::WouldBlock {
                                break;
                            }
                            eprintln!("Fatal read error on tun interface: {:?}", e);
                            return Action::Exit;
                        }
                        Err(e) => {
                            eprintln!("Unexpected error on tun interface: {:?}", e);
                            return Action::Exit;
                        }
                    };
                    if n <= VNET_HDR_LEN {
                        continue;
                    }
                    let (head, pkt) = bufs.tun[..n].split_at_mut(VNET_HDR_LEN);
                    let hdr = match VnetHdr::parse(head) {
                        Some(hdr) => hdr,
                        None => continue,
                    };
                    let dst_addr = match Tunn::dst_address(pkt) {
                        Some(addr) => addr,
                        None => continue,
                    };
                    let mut peer = match d.peers_by_ip.find(dst_addr) {
                        Some(peer) => peer.lock(),
                        None => continue,
                    };
                    let (tunnel, endpoint) = peer.tunnel_and_endpoint();
                    let target = match (endpoint.conn.as_ref(), endpoint.addr) {
                        (Some(conn), _) => Target::Connected(conn),
                        (None, Some(addr @ SocketAddr::V4(_))) => Target::To(udp4, addr.into()),
                        (None, Some(addr @ SocketAddr::V6(_))) => Target::To(udp6, addr.into()),
                        (None, None) => Target::Nowhere,
                    };
                    let batch: &mut Batch = &mut bufs.batch;
                    let cut = segment(&hdr, pkt, &mut bufs.segment, |seg| {
                        let len = match tunnel.encapsulate(seg, batch.spare()) {
                            TunnResult::WriteToNetwork(packet) => packet.len(),
                            TunnResult::Done => return,
                            TunnResult::Err(e) => {
                                tracing::error!(message = "Encapsulate error", error = ?e);
                                return;
                            }
                            _ => return,
                        };
                        batch.push(len, &target);
                    });
                    batch.flush(&target);
                    if let Err(e) = cut {
                        tracing::debug!(message = "Dropped a packet from the TUN", error = ?e);
                    }
                }
                Action::Continue
            }),
        )?;
        Ok(())
    }
}
