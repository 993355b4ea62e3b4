//! A TCP stream checked byte for byte: what a checksum or a segment count
//! cannot prove (data cut, joined or reordered wrong arrives as such).

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use vlnet_lab::NetNs;

/// The longest a stream may take (a stall fails the test).
pub const LIMIT: Duration = Duration::from_mins(2);

/// Byte `i` of every stream: a pattern that no shift or lost segment keeps.
pub fn pattern(i: usize) -> u8 {
    (i ^ (i >> 8) ^ (i >> 17)).to_le_bytes()[0]
}

/// Sends `mib` MiB of [`pattern`] over TCP from namespace `from` to `to_ip`
/// (listening in `to`, on `port`) and checks every byte on arrival; the
/// rate in Gbit/s. Fails if the stream stalls for [`LIMIT`].
pub fn checked(from: &NetNs, to: &NetNs, to_ip: Ipv4Addr, port: u16, mib: u32) -> f64 {
    let total = usize::try_from(mib).unwrap() << 20;
    let listener = to
        .within(|| TcpListener::bind((to_ip, port)).unwrap())
        .unwrap();
    let reader = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut at = 0;
        loop {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                return at;
            }
            for (k, &byte) in buf[..n].iter().enumerate() {
                assert_eq!(byte, pattern(at + k), "byte {} differs", at + k);
            }
            at += n;
        }
    });
    let mut conn = from
        .within(|| TcpStream::connect((to_ip, port)).unwrap())
        .unwrap();
    conn.set_write_timeout(Some(LIMIT)).unwrap();
    let started = Instant::now();
    let mut block = vec![0u8; 1 << 20];
    let mut sent = 0;
    while sent < total {
        for (k, byte) in block.iter_mut().enumerate() {
            *byte = pattern(sent + k);
        }
        conn.write_all(&block).unwrap();
        sent += block.len();
    }
    drop(conn);
    let received = reader.join().unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(received, total, "bytes received");
    assert!(started.elapsed() < LIMIT, "took {secs:.1} s");
    f64::from(mib) * 8.0 * 1_048_576.0 / 1e9 / secs
}
