//! The control plane's pure parts: no sockets, no clocks, no randomness of
//! their own (time and RNGs are passed in), so they test in plain Rust.
//!
//! - [`wire`]: the control protocol's messages and their framing.
//! - [`token`]: single-use, expiring invite tokens.
pub mod token;
pub mod wire;
