//! The control plane's pure parts: no sockets, no clocks, no randomness of
//! their own (time and RNGs are passed in), so they test in plain Rust. The
//! WireGuard session and the sync loop that use them are still to come.
//!
//! - [`wire`]: the control protocol's messages and their framing.
//! - [`token`]: single-use, expiring invite tokens.
//! - [`mobility`]: which VTEP each MAC lives behind, under the EVPN MAC
//!   Mobility rules (RFC 7432 §15).
pub mod macbook;
pub mod membership;
pub mod mobility;
pub mod registry;
pub mod token;
pub mod tunnel;
pub mod wire;
