//! Reaching a vlnet node under test: the binary Cargo built, and its
//! `/metrics` from inside its namespace.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use vlnet::lab::NetNs;

/// The `vlnet` binary of this build.
pub fn vlnet_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vlnet"))
}

/// `GET /metrics` on `127.0.0.1:port` inside `ns`; the body of a 200 answer.
pub fn scrape(ns: &NetNs, port: u16) -> String {
    let mut stream = ns
        .within(|| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The value of the sample `name` (labels included, as written in the text
/// format) in `metrics`; 0 when absent.
pub fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
