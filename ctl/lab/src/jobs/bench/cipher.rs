//! The encrypted path's ceiling on this machine: single-core
//! ChaCha20-Poly1305 throughput on WireGuard-sized messages (1420 bytes),
//! measured with `openssl speed` in the same run as the topologies, so that
//! `vlnet-wg` can be read as a fraction of what one core can encrypt.

use std::process::Command;

use anyhow::{anyhow, Context, Result};

/// Message size: WireGuard's MTU.
const MESSAGE_BYTES: &str = "1420";

/// One core's ChaCha20-Poly1305 rate, Gbit/s (`openssl speed -evp
/// chacha20-poly1305 -bytes 1420 -seconds 1`).
pub fn chacha20_poly1305_gbit_s() -> Result<f64> {
    let out = Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "chacha20-poly1305",
            "-bytes",
            MESSAGE_BYTES,
            "-seconds",
            "1",
        ])
        .output()
        .context("running openssl speed (is openssl installed?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_speed(&text)
        .ok_or_else(|| anyhow!("no ChaCha20-Poly1305 rate in openssl's output: {text}"))
}

/// The rate in `openssl speed`'s table (`ChaCha20-Poly1305  2097705.14k`:
/// thousands of bytes per second), Gbit/s.
fn parse_speed(text: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("chacha20-poly1305"))?;
    let kbytes: f64 = line
        .split_whitespace()
        .last()?
        .strip_suffix('k')?
        .parse()
        .ok()?;
    Some(kbytes * 1e3 * 8.0 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::parse_speed;

    #[test]
    fn reads_openssl_table() {
        let text = "The 'numbers' are in 1000s of bytes per second processed.\n\
                    type           1420 bytes\n\
                    ChaCha20-Poly1305  2097705.14k\n";
        let gbit = parse_speed(text).unwrap_or_default();
        assert!((gbit - 16.781_641_12).abs() < 1e-6, "{gbit}");
        assert_eq!(parse_speed("type 1420 bytes\n"), None);
        assert_eq!(parse_speed("ChaCha20-Poly1305 n/a\n"), None);
    }
}
