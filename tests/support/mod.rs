//! Helpers shared by the integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "each test binary uses a different subset; test code panics on failure"
)]

pub mod attacker;
pub mod bench;
pub mod control;
pub mod frames;
pub mod frr;
pub mod gateway_zone;
pub mod gobgp;
pub mod http;
pub mod interrupt;
pub mod leftovers;
pub mod node;
pub mod packet_socket;
pub mod pcap;
pub mod pings;
pub mod prometheus;
pub mod proxmox;
pub mod stream;
pub mod thread_netns;
pub mod vtep_bed;
pub mod wg_underlay;
