//! Tests of the user-space delay line (`vlnet_lab::primitives::delay`): two namespaces
//! joined by a `DelayLine` see the RTT it is set to (and a new one after
//! `set_delay`), lose nothing, carry iperf3 TCP at a useful rate, and the
//! TAPs are gone once it is dropped.
//!
//! Needs root, `/dev/net/tun`, iproute2, iputils-ping and iperf3; see
//! `tests/install-deps.sh`. Tests run in parallel: every namespace name
//! embeds the pid and a counter, and the TAP and address names are per
//! namespace.
#![allow(
    clippy::expect_used,
    reason = "test helpers outside #[test] fns panic with a message, like the test bodies"
)]

use std::net::Ipv4Addr;
use std::time::Duration;

use vlnet_lab::primitives::probe::{self, PingReport};
use vlnet_lab::{DelayLine, NetNs};

/// The TAP in each namespace.
const TAP: &str = "dl0";
/// End `a`'s and end `b`'s addresses, on one /30 of the underlay range.
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PREFIX: u8 = 30;
const ONE_WAY: Duration = Duration::from_millis(10);
const IPERF_PORT: u16 = 5201;
/// Throughput the line must at least carry (one TCP stream at 20 ms RTT).
const MIN_MBITS: f64 = 50.0;

/// Namespaces `a` and `b` joined by a line of `one_way`, addressed.
/// Declared so the line drops before the namespaces.
struct Bed {
    line: DelayLine,
    a: NetNs,
    b: NetNs,
}

impl Bed {
    fn new(tag: &str, one_way: Duration) -> Self {
        let a = NetNs::new(&format!("{tag}-a")).expect("namespace a");
        let b = NetNs::new(&format!("{tag}-b")).expect("namespace b");
        let line = DelayLine::new((&a, TAP), (&b, TAP), one_way).expect("delay line");
        for (ns, ip) in [(&a, A_IP), (&b, B_IP)] {
            ns.run(&["ip", "addr", "add", &format!("{ip}/{PREFIX}"), "dev", TAP])
                .expect("address the TAP");
        }
        Self { line, a, b }
    }

    /// 20 pings from `a` to `b`, 50 ms apart, after one that resolves ARP.
    fn ping(&self) -> PingReport {
        probe::ping(&self.a, B_IP, 1, Duration::from_millis(50)).expect("warm-up ping");
        let report = probe::ping(&self.a, B_IP, 20, Duration::from_millis(50)).expect("ping");
        assert_eq!(report.received, report.sent, "pings lost: {report:?}");
        report
    }
}

fn median_ms(report: &PingReport) -> f64 {
    report.rtt_p50_ms().expect("some replies")
}

/// The line holds each frame its delay, never less, and adds nothing of
/// its own: the fastest of the pings takes 20–22 ms. The median may take
/// longer on a loaded machine (the line's thread and ping wait for a
/// core), so it is only bounded loosely.
fn assert_rtt_is_20_ms(report: &PingReport) {
    let min = report.rtt_min_ms.expect("some replies");
    assert!(
        (20.0..=22.0).contains(&min),
        "fastest RTT {min} ms: {report:?}"
    );
    let median = median_ms(report);
    assert!(median < 35.0, "median RTT {median} ms: {report:?}");
}

fn has_tap(ns: &NetNs) -> bool {
    ns.run(&["ip", "-o", "link", "show"])
        .expect("ip link")
        .lines()
        .any(|l| l.split(':').nth(1).map(str::trim) == Some(TAP))
}

#[test]
fn ten_ms_each_way_is_a_20_ms_rtt_and_the_taps_go_on_drop() {
    let bed = Bed::new("dlrtt", ONE_WAY);
    let report = bed.ping();
    let median = median_ms(&report);
    eprintln!("delay line 10 ms one-way: median RTT {median:.3} ms ({report:?})");
    assert_rtt_is_20_ms(&report);

    let stats = bed.line.stats();
    for (way, dir) in [("a→b", stats.a_to_b), ("b→a", stats.b_to_a)] {
        assert!(dir.frames >= 21 && dir.bytes >= 21 * 98, "{way}: {dir:?}");
        assert_eq!(dir.dropped, 0, "{way}: {dir:?}");
    }

    let Bed { line, a, b } = bed;
    assert!(has_tap(&a) && has_tap(&b));
    drop(line);
    assert!(!has_tap(&a), "the TAP survived in {}", a.name());
    assert!(!has_tap(&b), "the TAP survived in {}", b.name());
}

#[test]
fn set_delay_takes_a_zero_delay_line_to_20_ms() {
    let bed = Bed::new("dlset", Duration::ZERO);
    let median = median_ms(&bed.ping());
    eprintln!("delay line 0 ms: median RTT {median:.3} ms");
    assert!(median < 2.0, "median RTT {median} ms without delay");

    bed.line.set_delay(ONE_WAY);
    assert_eq!(bed.line.delay(), ONE_WAY);
    assert_rtt_is_20_ms(&bed.ping());
}

#[test]
fn iperf3_tcp_crosses_a_20_ms_rtt_line() {
    let bed = Bed::new("dltcp", ONE_WAY);
    let _server = probe::iperf3_server(&bed.b, B_IP, IPERF_PORT).expect("iperf3 server");
    let report = probe::iperf3_client(&bed.a, B_IP, 3, 1, IPERF_PORT).expect("iperf3 client");
    let mbits = report.bits_per_second / 1e6;
    eprintln!(
        "delay line 10 ms one-way: iperf3 TCP {mbits:.0} Mbit/s, {} retransmits, {:?}",
        report.retransmits,
        bed.line.stats()
    );
    assert!(mbits > MIN_MBITS, "{mbits:.1} Mbit/s through the line");
}
