//! Traffic probes run inside a namespace, each bounded in time: [`ping`]
//! (iputils), [`iperf3_server`]/[`iperf3_client`] (`--json`), and [`capture`]
//! (tshark dissecting into fields, e.g. `vxlan.vni`).
//!
//! tshark decodes UDP 4789 as VXLAN by default (`tshark -G decodes` lists
//! `udp.port 4789 vxlan`), so no `-d` option is passed.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::primitives::netns::{drain, ChildGuard, LabError, NetNs};

/// Extra time allowed on top of a probe's own duration before it is killed.
const GRACE: Duration = Duration::from_secs(10);
/// How long to wait for a server or capture to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// What tshark logs once dumpcap has opened the interface and set the filter.
/// Its earlier "Capturing on '…'" comes before that (even when the interface
/// then fails to open), so packets sent right after it can be missed.
const CAPTURE_STARTED: &str = "Capture started";

/// What `ping` reported.
#[derive(Debug, Clone, PartialEq)]
pub struct PingReport {
    /// Echo requests sent.
    pub sent: u32,
    /// Echo replies received (duplicates not counted).
    pub received: u32,
    /// Duplicate replies.
    pub duplicates: u32,
    /// ICMP errors received (e.g. host unreachable).
    pub errors: u32,
    /// Lost fraction, 0.0–1.0 (`1 - received / sent`).
    pub loss: f64,
    /// Minimum RTT in ms; `None` if nothing came back.
    pub rtt_min_ms: Option<f64>,
    /// Mean RTT in ms.
    pub rtt_avg_ms: Option<f64>,
    /// Maximum RTT in ms.
    pub rtt_max_ms: Option<f64>,
    /// RTT mean deviation in ms.
    pub rtt_mdev_ms: Option<f64>,
    /// Every reply's RTT in ms, in arrival order (for percentiles).
    pub rtts_ms: Vec<f64>,
    /// Every reply's `icmp_seq` (iputils counts from 1), in arrival order,
    /// duplicates not counted.
    pub seqs: Vec<u32>,
}

impl PingReport {
    /// Median of [`rtts_ms`](Self::rtts_ms); `None` if nothing came back.
    #[must_use]
    pub fn rtt_p50_ms(&self) -> Option<f64> {
        let mut rtts = self.rtts_ms.clone();
        rtts.sort_by(f64::total_cmp);
        rtts.get(rtts.len() / 2).copied()
    }

    /// The replies' RTT smoothed in arrival order as TCP's SRTT (RFC 6298:
    /// the first sample, then each new one weighted 1/8), which is how the
    /// data plane smooths a flow's samples; `None` if nothing came back.
    #[must_use]
    pub fn smoothed_rtt_ms(&self) -> Option<f64> {
        let (&first, rest) = self.rtts_ms.split_first()?;
        Some(
            rest.iter()
                .fold(first, |srtt, rtt| srtt + (rtt - srtt) / 8.0),
        )
    }

    /// `(sent, lost)` counting only requests up to the last one answered:
    /// requests still in flight when ping stopped are not losses. With no
    /// reply at all, every request sent was lost.
    #[must_use]
    pub fn answered_window(&self) -> (u32, u32) {
        let Some(&last) = self.seqs.iter().max() else {
            return (self.sent, self.sent);
        };
        let mut answered: Vec<u32> = self.seqs.clone();
        answered.sort_unstable();
        answered.dedup();
        (last, last.saturating_sub(answered.len() as u32))
    }

    /// The longest run of unanswered requests inside the answered window,
    /// as time at `interval` per request: how long the destination was
    /// unreachable, to the nearest `interval`.
    #[must_use]
    pub fn longest_outage(&self, interval: Duration) -> Duration {
        let mut answered: Vec<u32> = self.seqs.clone();
        answered.push(0); // as if request 0 had been answered: a start without replies counts
        answered.sort_unstable();
        answered.dedup();
        let gap = answered
            .windows(2)
            .map(|w| w[1] - w[0] - 1)
            .max()
            .unwrap_or(0);
        interval * gap
    }
}

/// `ping -c count -i interval dst` from `ns`. Bounded by a deadline of
/// `count × interval + 2 s`; partial loss is a report, not an error.
pub fn ping(
    ns: &NetNs,
    dst: Ipv4Addr,
    count: u32,
    interval: Duration,
) -> Result<PingReport, LabError> {
    ping_from_cpu(ns, dst, count, interval, None)
}

/// As [`ping`], with the pinger pinned to `cpu` (`taskset -c`) when given.
pub fn ping_from_cpu(
    ns: &NetNs,
    dst: Ipv4Addr,
    count: u32,
    interval: Duration,
    cpu: Option<usize>,
) -> Result<PingReport, LabError> {
    let deadline = (interval.as_secs_f64() * f64::from(count)).ceil() + 2.0;
    let pin = cpu.map(|cpu| ["taskset".to_owned(), "-c".to_owned(), cpu.to_string()]);
    let ping = [
        "ping".to_owned(),
        "-n".to_owned(),
        "-c".to_owned(),
        count.to_string(),
        "-i".to_owned(),
        format!("{:.3}", interval.as_secs_f64()),
        "-W".to_owned(),
        "1".to_owned(),
        "-w".to_owned(),
        format!("{deadline:.0}"),
        dst.to_string(),
    ];
    let args: Vec<&str> = pin
        .iter()
        .flatten()
        .chain(&ping)
        .map(String::as_str)
        .collect();
    let output = ns.output_within(&args, Duration::from_secs_f64(deadline) + GRACE)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // iputils: 0 all good, 1 some replies missing, 2 other errors.
    match (output.status.code(), parse_ping(&stdout)) {
        (Some(0 | 1), Ok(report)) => Ok(report),
        (_, result) => Err(LabError::Failed {
            command: format!("{} (in {})", args.join(" "), ns.name()),
            status: output.status.to_string(),
            stderr: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stderr).trim(),
                result.err().map(|e| format!("; {e}")).unwrap_or_default()
            ),
        }),
    }
}

/// Three pings of `payload` bytes from `ns` to `dst` with fragmentation
/// forbidden (`ping -M do`): succeeds only if the path carries packets of
/// that size whole.
pub fn ping_whole(ns: &NetNs, dst: Ipv4Addr, payload: u32) -> Result<String, LabError> {
    ns.run(&[
        "ping",
        "-c",
        "3",
        "-W",
        "1",
        "-M",
        "do",
        "-s",
        &payload.to_string(),
        &dst.to_string(),
    ])
}

/// Reads iputils ping's per-reply lines (`… time=0.05 ms`) and summary.
pub fn parse_ping(out: &str) -> Result<PingReport, LabError> {
    let bad = |detail: String| LabError::Parse {
        what: "ping".into(),
        detail,
    };
    let summary = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .ok_or_else(|| bad(format!("no summary line in {out:?}")))?;
    let mut report = PingReport {
        sent: 0,
        received: 0,
        duplicates: 0,
        errors: 0,
        loss: 1.0,
        rtt_min_ms: None,
        rtt_avg_ms: None,
        rtt_max_ms: None,
        rtt_mdev_ms: None,
        rtts_ms: replies(out, " time=").collect(),
        seqs: replies(out, " icmp_seq=").collect(),
    };
    for part in summary.split(',') {
        let mut words = part.split_whitespace();
        let (Some(number), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let n = || {
            number
                .trim_start_matches('+')
                .parse::<u32>()
                .map_err(|e| bad(format!("{number:?} in {summary:?}: {e}")))
        };
        match what {
            "packets" => report.sent = n()?,
            "received" => report.received = n()?,
            "duplicates" => report.duplicates = n()?,
            "errors" => report.errors = n()?,
            _ => {}
        }
    }
    if report.sent > 0 {
        report.loss = 1.0 - f64::from(report.received) / f64::from(report.sent);
    }
    if let Some(rtt) = out.lines().find(|l| l.starts_with("rtt ")) {
        let values = rtt
            .split('=')
            .nth(1)
            .ok_or_else(|| bad(format!("rtt line {rtt:?}")))?;
        // "0.031/0.050/0.090/0.010 ms[, pipe 2][, ipg/ewma …]"
        let v: Vec<f64> = values
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_end_matches("ms")
            .trim()
            .split('/')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("rtt line {rtt:?}: {e}")))?;
        if let [min, avg, max, mdev] = v[..] {
            report.rtt_min_ms = Some(min);
            report.rtt_avg_ms = Some(avg);
            report.rtt_max_ms = Some(max);
            report.rtt_mdev_ms = Some(mdev);
        } else {
            return Err(bad(format!("rtt line {rtt:?}: expected 4 values")));
        }
    }
    Ok(report)
}

/// The value after `key` (up to the next space) on every non-duplicate
/// reply line of ping's output that has it.
fn replies<'a, T: std::str::FromStr>(out: &'a str, key: &'a str) -> impl Iterator<Item = T> + 'a {
    out.lines()
        .filter(|l| !l.contains("(DUP!)"))
        .filter_map(move |l| l.split_once(key)?.1.split_whitespace().next()?.parse().ok())
}

/// Starts `iperf3 -s -B bind -p port` in `ns` and waits (≤ 10 s) until it
/// listens. The guard kills it.
pub fn iperf3_server(ns: &NetNs, bind: Ipv4Addr, port: u16) -> Result<ChildGuard, LabError> {
    let port_s = port.to_string();
    let mut server = ns.spawn(&["iperf3", "-s", "-B", &bind.to_string(), "-p", &port_s])?;
    wait_listening(ns, port, &mut server)?;
    Ok(server)
}

/// Waits (≤ 10 s) until a TCP socket listens on `port` in `ns`, while
/// `server` (the process that should open it) runs.
pub fn wait_listening(ns: &NetNs, port: u16, server: &mut ChildGuard) -> Result<(), LabError> {
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = server.try_wait()? {
            return Err(LabError::Failed {
                command: server.command().to_owned(),
                status: status.to_string(),
                stderr: format!("exited before listening on port {port} (in use?)"),
            });
        }
        if !ns.run(&["ss", "-Hltn", &filter])?.trim().is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                command: server.command().to_owned(),
                after: START_TIMEOUT,
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// What an iperf3 client measured.
#[derive(Debug, Clone, PartialEq)]
pub struct IperfReport {
    /// Throughput the receiver saw (`end.sum_received`), bits/s.
    pub bits_per_second: f64,
    /// Throughput the sender pushed (`end.sum_sent`), bits/s.
    pub sent_bits_per_second: f64,
    /// TCP retransmissions on the sender (0 if iperf3 did not report them).
    pub retransmits: u64,
}

/// The CPUs a measurement's two ends run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuPair {
    /// The sending end (the iperf3 client, the pinger).
    pub client: usize,
    /// The receiving end (the iperf3 server).
    pub server: usize,
}

/// `iperf3 -c dst -p port -t secs -P streams --json` from `ns`, bounded by
/// `secs + 10 s`.
pub fn iperf3_client(
    ns: &NetNs,
    dst: Ipv4Addr,
    secs: u32,
    streams: u32,
    port: u16,
) -> Result<IperfReport, LabError> {
    iperf3_client_on(ns, dst, secs, streams, port, None)
}

/// As [`iperf3_client`], with client and server each pinned to one CPU
/// (`iperf3 -A client,server`) when `cpus` is given.
pub fn iperf3_client_on(
    ns: &NetNs,
    dst: Ipv4Addr,
    secs: u32,
    streams: u32,
    port: u16,
    cpus: Option<CpuPair>,
) -> Result<IperfReport, LabError> {
    let mut args = vec![
        "iperf3".to_owned(),
        "-c".to_owned(),
        dst.to_string(),
        "-p".to_owned(),
        port.to_string(),
        "-t".to_owned(),
        secs.to_string(),
        "-P".to_owned(),
        streams.max(1).to_string(),
        "--connect-timeout".to_owned(),
        "3000".to_owned(),
        "--json".to_owned(),
    ];
    if let Some(cpus) = cpus {
        args.extend(["-A".to_owned(), format!("{},{}", cpus.client, cpus.server)]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = ns.output_within(&args, Duration::from_secs(secs.into()) + GRACE)?;
    // iperf3 prints JSON (with an "error" member) even when it fails.
    parse_iperf3(&String::from_utf8_lossy(&output.stdout)).map_err(|e| match e {
        LabError::Parse { .. } if !output.status.success() => LabError::Failed {
            command: args.join(" "),
            status: output.status.to_string(),
            stderr: format!("{e}; stderr: {}", String::from_utf8_lossy(&output.stderr)),
        },
        e => e,
    })
}

/// Reads `iperf3 --json` output.
pub fn parse_iperf3(json: &str) -> Result<IperfReport, LabError> {
    let bad = |detail: String| LabError::Parse {
        what: "iperf3 --json".into(),
        detail,
    };
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(format!("{e}: {json:.200}")))?;
    if let Some(err) = v.get("error").and_then(serde_json::Value::as_str) {
        return Err(bad(format!("iperf3 error: {err}")));
    }
    let end = &v["end"];
    let bps = |sum: &str| {
        end[sum]["bits_per_second"]
            .as_f64()
            .ok_or_else(|| bad(format!("no end.{sum}.bits_per_second")))
    };
    Ok(IperfReport {
        bits_per_second: bps("sum_received")?,
        sent_bits_per_second: bps("sum_sent")?,
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    })
}

/// Dissected packets from [`capture`]: one row per packet, one column per
/// requested field. A field present several times (outer and inner `ip.src`
/// of a VXLAN frame) is comma-joined, outer first; an absent one is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureReport {
    /// The requested field names, in column order.
    pub fields: Vec<String>,
    /// One row per captured packet.
    pub rows: Vec<Vec<String>>,
}

impl CaptureReport {
    /// The values of `field` (first occurrence), one per packet.
    #[must_use]
    pub fn column(&self, field: &str) -> Vec<&str> {
        let Some(i) = self.fields.iter().position(|f| f == field) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .map(|r| r.get(i).map_or("", |v| v.split(',').next().unwrap_or("")))
            .collect()
    }
}

/// A running tshark capture; [`Capture::finish`] collects it.
#[derive(Debug)]
pub struct Capture {
    guard: ChildGuard,
    stdout: thread::JoinHandle<Vec<u8>>,
    stderr: thread::JoinHandle<String>,
    fields: Vec<String>,
    limit: Duration,
}

impl Capture {
    /// Starts `tshark -i iface -f filter -a duration:N [-c count] -T fields
    /// -e …` in `ns` and returns once tshark logs that the capture has
    /// started (≤ 10 s), so it sees everything sent afterwards.
    /// `duration` is rounded up to whole seconds.
    pub fn start(
        ns: &NetNs,
        iface: &str,
        filter: &str,
        fields: &[&str],
        count: Option<u32>,
        duration: Duration,
    ) -> Result<Self, LabError> {
        let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
        let secs = secs.max(1);
        let mut cmd = ns.cmd("tshark");
        cmd.args(["-n", "-l", "-i", iface, "-f", filter])
            .arg("-a")
            .arg(format!("duration:{secs}"));
        if let Some(c) = count {
            cmd.arg("-c").arg(c.to_string());
        }
        cmd.args(["-T", "fields"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn(&mut cmd)?;
        let stdout = drain(guard.child_mut().stdout.take());
        let err = guard.child_mut().stderr.take();
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            if let Some(err) = err {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if line.contains(CAPTURE_STARTED) {
                        let _ = ready_tx.send(());
                    }
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            text
        });
        let mut capture = Self {
            guard,
            stdout,
            stderr,
            fields: fields.iter().map(|&f| f.to_owned()).collect(),
            limit: Duration::from_secs(secs) + GRACE,
        };
        if ready_rx.recv_timeout(START_TIMEOUT).is_ok() {
            return Ok(capture);
        }
        capture.guard.kill();
        let command = capture.guard.command().to_owned();
        let stderr = capture.stderr.join().unwrap_or_default();
        Err(LabError::Failed {
            command,
            status: "did not start capturing".into(),
            stderr: stderr.trim().to_owned(),
        })
    }

    /// Waits for the capture to end (count reached or duration over; killed
    /// after duration + 10 s) and returns the dissected rows.
    pub fn finish(mut self) -> Result<CaptureReport, LabError> {
        let status = self.guard.wait_within(self.limit)?;
        let command = self.guard.command().to_owned();
        self.guard.kill();
        let out = self.stdout.join().unwrap_or_default();
        let err = self.stderr.join().unwrap_or_default();
        match status {
            Some(s) if s.success() => {}
            Some(s) => {
                return Err(LabError::Failed {
                    command,
                    status: s.to_string(),
                    stderr: err.trim().to_owned(),
                })
            }
            None => {
                return Err(LabError::Timeout {
                    command,
                    after: self.limit,
                })
            }
        }
        Ok(parse_fields(&self.fields, &String::from_utf8_lossy(&out)))
    }
}

fn parse_fields(fields: &[String], out: &str) -> CaptureReport {
    CaptureReport {
        fields: fields.to_vec(),
        rows: out
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect(),
    }
}

/// [`Capture::start`] then [`Capture::finish`]: captures for `duration` (or
/// until `count` packets) with nothing else running meanwhile — start a
/// [`Capture`] instead when the traffic must be generated during it.
pub fn capture(
    ns: &NetNs,
    iface: &str,
    filter: &str,
    fields: &[&str],
    count: Option<u32>,
    duration: Duration,
) -> Result<CaptureReport, LabError> {
    Capture::start(ns, iface, filter, fields, count, duration)?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_all_received() {
        let out = "PING 192.0.2.2 (192.0.2.2) 56(84) bytes of data.\n\n\
            --- 192.0.2.2 ping statistics ---\n\
            20 packets transmitted, 20 received, 0% packet loss, time 199ms\n\
            rtt min/avg/max/mdev = 0.031/0.050/0.090/0.010 ms\n";
        let r = parse_ping(out).unwrap();
        assert_eq!((r.sent, r.received, r.duplicates, r.errors), (20, 20, 0, 0));
        assert!(r.loss.abs() < f64::EPSILON);
        assert_eq!(r.rtt_avg_ms, Some(0.050));
        assert_eq!(r.rtt_mdev_ms, Some(0.010));
        assert!(r.rtts_ms.is_empty());
    }

    #[test]
    fn parses_ping_reply_times() {
        let out = "64 bytes from 192.0.2.2: icmp_seq=1 ttl=64 time=0.300 ms\n\
            64 bytes from 192.0.2.2: icmp_seq=2 ttl=64 time=0.100 ms\n\
            64 bytes from 192.0.2.2: icmp_seq=2 ttl=64 time=0.900 ms (DUP!)\n\
            64 bytes from 192.0.2.2: icmp_seq=3 ttl=64 time=0.200 ms\n\n\
            3 packets transmitted, 3 received, +1 duplicates, 0% packet loss, time 2ms\n\
            rtt min/avg/max/mdev = 0.100/0.200/0.300/0.080 ms\n";
        let r = parse_ping(out).unwrap();
        assert_eq!(r.rtts_ms, [0.3, 0.1, 0.2]);
        assert_eq!(r.seqs, [1, 2, 3]);
        assert_eq!(r.rtt_p50_ms(), Some(0.2));
        // 0.3, then 0.3 + (0.1 − 0.3)/8 = 0.275, then 0.275 + (0.2 − 0.275)/8.
        let srtt = r.smoothed_rtt_ms().unwrap();
        assert!((srtt - 0.265_625).abs() < 1e-9, "{srtt}");
    }

    #[test]
    fn losses_count_only_up_to_the_last_reply() {
        let line =
            |seq: u32| format!("64 bytes from 192.0.2.2: icmp_seq={seq} ttl=64 time=1.0 ms\n");
        // 1–3 answered, 4–7 lost, 8–9 answered, 10–11 still in flight at the stop.
        let mut out: String = [1, 2, 3, 8, 9].into_iter().map(line).collect();
        out.push_str("11 packets transmitted, 5 received, 54% packet loss, time 100ms\n");
        let r = parse_ping(&out).unwrap();
        assert_eq!(r.answered_window(), (9, 4));
        let tick = Duration::from_millis(10);
        assert_eq!(r.longest_outage(tick), Duration::from_millis(40));
        // Nothing answered until request 3: the start counts as an outage.
        let late: String = [3, 4].into_iter().map(line).collect();
        let r = parse_ping(&format!("{late}4 packets transmitted, 2 received\n")).unwrap();
        assert_eq!(r.longest_outage(tick), Duration::from_millis(20));
        let none = parse_ping("4 packets transmitted, 0 received\n").unwrap();
        assert_eq!(none.answered_window(), (4, 4));
    }

    #[test]
    fn parses_ping_with_loss_duplicates_and_errors() {
        let out = "10 packets transmitted, 8 received, +2 duplicates, 20% packet loss, time 9ms\n\
                   rtt min/avg/max/mdev = 1.000/2.500/4.000/0.500 ms, pipe 2\n";
        let r = parse_ping(out).unwrap();
        assert_eq!((r.sent, r.received, r.duplicates), (10, 8, 2));
        assert!((r.loss - 0.2).abs() < 1e-9);
        assert_eq!(r.rtt_max_ms, Some(4.0));

        let out = "5 packets transmitted, 0 received, +5 errors, 100% packet loss, time 4ms\n";
        let r = parse_ping(out).unwrap();
        assert_eq!((r.sent, r.received, r.errors), (5, 0, 5));
        assert!((r.loss - 1.0).abs() < f64::EPSILON);
        assert_eq!(r.rtt_avg_ms, None);
    }

    #[test]
    fn rejects_ping_without_summary() {
        assert!(matches!(
            parse_ping("ping: connect: Network is unreachable"),
            Err(LabError::Parse { .. })
        ));
    }

    #[test]
    fn parses_iperf3_json() {
        let json = r#"{"start":{},"intervals":[],"end":{
            "sum_sent":{"bits_per_second":9.5e9,"retransmits":3},
            "sum_received":{"bits_per_second":9.4e9}}}"#;
        let r = parse_iperf3(json).unwrap();
        assert!((r.bits_per_second - 9.4e9).abs() < 1.0);
        assert!((r.sent_bits_per_second - 9.5e9).abs() < 1.0);
        assert_eq!(r.retransmits, 3);
        let err = parse_iperf3(r#"{"start":{},"end":{},"error":"unable to connect"}"#).unwrap_err();
        assert!(err.to_string().contains("unable to connect"));
    }

    #[test]
    fn capture_columns_take_the_outer_occurrence() {
        let fields = vec!["vxlan.vni".to_owned(), "ip.src".to_owned()];
        let r = parse_fields(
            &fields,
            "100\t198.18.0.1,192.0.2.1\n100\t198.18.0.2,192.0.2.2\n",
        );
        assert_eq!(r.column("vxlan.vni"), ["100", "100"]);
        assert_eq!(r.column("ip.src"), ["198.18.0.1", "198.18.0.2"]);
        assert!(r.column("nope").is_empty());
    }
}
