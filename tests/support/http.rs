//! A minimal HTTP client for servers under test inside a lab namespace
//! (vlnet's `/metrics`, Prometheus' API). It speaks HTTP/1.0, so answers come
//! whole and unchunked, and the server closes the connection after each one.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use vlnet_lab::NetNs;

/// How long a request may take before it fails.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A server's answer.
#[derive(Debug)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// `GET path` on `127.0.0.1:port` inside `ns`. Connection and protocol
/// failures are errors (a server still starting refuses connections); any
/// status code is a [`Response`].
pub fn get(ns: &NetNs, port: u16, path: &str) -> io::Result<Response> {
    let answer = ns
        .within(|| -> io::Result<String> {
            let mut stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        })
        .map_err(io::Error::other)??;
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not HTTP: {answer:.200}"),
        )
    };
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}
