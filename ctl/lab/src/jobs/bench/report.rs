//! The benchmark's results: per-topology [`Metrics`], ratios against a
//! reference, the printed table and the JSON document. Pure; unit-tested.

use std::fmt::Write as _;

use serde::Serialize;

/// What one topology measured. Every value is positive when the run worked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// iperf3 TCP, 1 stream, received Gbit/s.
    pub tcp_1_stream_gbit_s: f64,
    /// iperf3 TCP, 4 streams, received Gbit/s.
    pub tcp_4_streams_gbit_s: f64,
    /// iperf3 TCP, 4 streams with both ends on one CPU, received Gbit/s.
    /// A veth hands packets on in the sender's softirq, so the whole path
    /// then runs on that CPU, saturated: the figure is one over the path's
    /// CPU cost per byte, however the two-CPU runs split the work.
    pub tcp_4_streams_one_cpu_gbit_s: f64,
    /// Ping RTT, mean, ms.
    pub ping_rtt_avg_ms: f64,
    /// Ping RTT, median, ms.
    pub ping_rtt_p50_ms: f64,
    /// The small-packet runs; `None` where the generator cannot feed the
    /// path (its frames are VXLAN in clear, not WireGuard). Flattened into
    /// the JSON, so those fields are absent then.
    #[serde(flatten)]
    pub small_packets: Option<SmallPackets>,
}

/// The small-packet runs of one topology.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SmallPackets {
    /// 64-byte UDP frames that reached the receiver's UDP layer, Mpps.
    pub udp64_delivered_mpps: f64,
    /// 64-byte UDP frames the generator pushed, Mpps (same CPU: shows how
    /// much of it the receive path left to the generator).
    pub udp64_generated_mpps: f64,
    /// Fraction of generated frames delivered (0–1).
    pub udp64_delivered_fraction: f64,
    /// Decap run (the VM's interface drops every frame at XDP): 64-byte
    /// frames counted where the receiving host decapsulates them, Mpps (the
    /// kernel vxlan device's rx packets, or the vlnet node's rx counter for
    /// the sender; `plain`: the receiving host's underlay rx). Both count
    /// before handing the frame on, so frames lost after decap (a full
    /// backlog behind a TC redirect, say) still count: the VM-port row is
    /// what got through.
    pub udp64_decapsulated_mpps: f64,
    /// Decap run: frames that reached the VM's interface, Mpps.
    pub udp64_at_vm_port_mpps: f64,
    /// Decap run: frames the generator pushed, Mpps (the offered load).
    pub udp64_decap_run_generated_mpps: f64,
    /// Fed decap run: the decap run with the frames pushed straight into
    /// the receiving host's underlay veth as XDP frames (no skb, as from a
    /// NIC's driver; see `pps::Feed::Receiver`): frames decapsulated, Mpps.
    pub udp64_fed_decapsulated_mpps: f64,
    /// Fed decap run: frames that reached the VM's interface, Mpps.
    pub udp64_fed_at_vm_port_mpps: f64,
    /// Fed decap run: frames the generator pushed, Mpps.
    pub udp64_fed_generated_mpps: f64,
    /// The receiving host's own cost per frame in the decap run, µs: one
    /// over the decapsulated rate less one over `plain`'s in the same run
    /// (see [`with_receive_costs`]). `None` for `plain` itself and in a
    /// run without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp64_receive_us: Option<f64>,
}

/// The topology whose small-packet rates every other's receive cost is
/// set against.
const PLAIN: &str = "plain";

/// Fills in each topology's receive cost ([`SmallPackets::udp64_receive_us`]).
///
/// In the decap run the receive path has CPU 1 to itself (on a machine
/// with two CPUs or more; see `pps`) and the rate is what that CPU can
/// take, so one over it is the CPU time per frame. Every
/// topology's frame costs the same before the receiving host takes it:
/// the switch's bridge, and the copy the receiving veth makes for XDP.
/// `plain` drops the frame right there, so one over its rate is that
/// shared cost, and one over another topology's rate less it is that
/// topology's receiving host alone: its decap and its way to the VM's
/// port. (The kernel topologies run no XDP on the underlay and so skip the
/// copy `plain` pays: their cost comes out too low, if anything.) Noise
/// can make a cheap receiver's figure zero or below. The fed decap run has
/// no such figure: there the generator shares the CPU, and its own cost
/// per frame is not the same from one topology to the next.
fn with_receive_costs(mut topologies: Vec<Measured>) -> Vec<Measured> {
    let Some(plain) = topologies
        .iter()
        .find(|t| t.name == PLAIN)
        .and_then(|t| t.metrics.small_packets)
    else {
        return topologies;
    };
    let plain_mpps = plain.udp64_decapsulated_mpps;
    for t in topologies.iter_mut().filter(|t| t.name != PLAIN) {
        if let Some(s) = t.metrics.small_packets.as_mut() {
            let mpps = s.udp64_decapsulated_mpps;
            s.udp64_receive_us =
                (mpps > 0.0 && plain_mpps > 0.0).then(|| 1.0 / mpps - 1.0 / plain_mpps);
        }
    }
    topologies
}

/// Whether a bigger value of a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

/// Width of the table's first column (the longest label).
const LABEL_WIDTH: usize = 35;

/// What the table shows for a metric a topology did not measure.
const NOT_MEASURED: &str = "-";

/// `(label, better, value)` of every metric, in table order.
type Row = (&'static str, Better, fn(&Metrics) -> Option<f64>);

const ROWS: [Row; 15] = [
    ("TCP 1 stream (Gbit/s)", Better::Higher, |m| {
        Some(m.tcp_1_stream_gbit_s)
    }),
    ("TCP 4 streams (Gbit/s)", Better::Higher, |m| {
        Some(m.tcp_4_streams_gbit_s)
    }),
    ("TCP 4 streams, one CPU (Gbit/s)", Better::Higher, |m| {
        Some(m.tcp_4_streams_one_cpu_gbit_s)
    }),
    ("64B UDP delivered (Mpps)", Better::Higher, |m| {
        m.small_packets.map(|s| s.udp64_delivered_mpps)
    }),
    ("64B UDP generated (Mpps)", Better::Higher, |m| {
        m.small_packets.map(|s| s.udp64_generated_mpps)
    }),
    ("64B UDP delivered/generated", Better::Higher, |m| {
        m.small_packets.map(|s| s.udp64_delivered_fraction)
    }),
    ("64B decapsulated (Mpps)", Better::Higher, |m| {
        m.small_packets.map(|s| s.udp64_decapsulated_mpps)
    }),
    ("64B delivered to the VM port (Mpps)", Better::Higher, |m| {
        m.small_packets.map(|s| s.udp64_at_vm_port_mpps)
    }),
    ("64B generated, decap run (Mpps)", Better::Higher, |m| {
        m.small_packets.map(|s| s.udp64_decap_run_generated_mpps)
    }),
    ("64B decapsulated, fed (Mpps)", Better::Higher, |m| {
        m.small_packets.map(|s| s.udp64_fed_decapsulated_mpps)
    }),
    ("64B to the VM port, fed (Mpps)", Better::Higher, |m| {
        m.small_packets.map(|s| s.udp64_fed_at_vm_port_mpps)
    }),
    ("64B generated, fed (Mpps)", Better::Higher, |m| {
        m.small_packets.map(|s| s.udp64_fed_generated_mpps)
    }),
    ("64B receiving host, µs/frame", Better::Lower, |m| {
        m.small_packets.and_then(|s| s.udp64_receive_us)
    }),
    ("ping RTT avg (ms)", Better::Lower, |m| {
        Some(m.ping_rtt_avg_ms)
    }),
    ("ping RTT p50 (ms)", Better::Lower, |m| {
        Some(m.ping_rtt_p50_ms)
    }),
];

/// `a / b`, NaN when `b` is not positive.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

impl Metrics {
    /// Each metric of `self` divided by the same metric of `reference`
    /// (RTT ratios below 1 are better, every other ratio above 1); the
    /// small-packet ratios only when both measured them.
    #[must_use]
    pub fn ratio_to(&self, reference: &Self) -> Self {
        Self {
            tcp_1_stream_gbit_s: ratio(self.tcp_1_stream_gbit_s, reference.tcp_1_stream_gbit_s),
            tcp_4_streams_gbit_s: ratio(self.tcp_4_streams_gbit_s, reference.tcp_4_streams_gbit_s),
            tcp_4_streams_one_cpu_gbit_s: ratio(
                self.tcp_4_streams_one_cpu_gbit_s,
                reference.tcp_4_streams_one_cpu_gbit_s,
            ),
            ping_rtt_avg_ms: ratio(self.ping_rtt_avg_ms, reference.ping_rtt_avg_ms),
            ping_rtt_p50_ms: ratio(self.ping_rtt_p50_ms, reference.ping_rtt_p50_ms),
            small_packets: self
                .small_packets
                .zip(reference.small_packets)
                .map(|(s, r)| s.ratio_to(&r)),
        }
    }
}

impl SmallPackets {
    fn ratio_to(&self, reference: &Self) -> Self {
        Self {
            udp64_delivered_mpps: ratio(self.udp64_delivered_mpps, reference.udp64_delivered_mpps),
            udp64_generated_mpps: ratio(self.udp64_generated_mpps, reference.udp64_generated_mpps),
            udp64_delivered_fraction: ratio(
                self.udp64_delivered_fraction,
                reference.udp64_delivered_fraction,
            ),
            udp64_decapsulated_mpps: ratio(
                self.udp64_decapsulated_mpps,
                reference.udp64_decapsulated_mpps,
            ),
            udp64_at_vm_port_mpps: ratio(
                self.udp64_at_vm_port_mpps,
                reference.udp64_at_vm_port_mpps,
            ),
            udp64_decap_run_generated_mpps: ratio(
                self.udp64_decap_run_generated_mpps,
                reference.udp64_decap_run_generated_mpps,
            ),
            udp64_fed_decapsulated_mpps: ratio(
                self.udp64_fed_decapsulated_mpps,
                reference.udp64_fed_decapsulated_mpps,
            ),
            udp64_fed_at_vm_port_mpps: ratio(
                self.udp64_fed_at_vm_port_mpps,
                reference.udp64_fed_at_vm_port_mpps,
            ),
            udp64_fed_generated_mpps: ratio(
                self.udp64_fed_generated_mpps,
                reference.udp64_fed_generated_mpps,
            ),
            udp64_receive_us: self
                .udp64_receive_us
                .zip(reference.udp64_receive_us)
                .map(|(s, r)| ratio(s, r)),
        }
    }
}

/// One measured topology.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// Short name (`plain`, `kernel`, `vlnet-tc`, `vlnet-wg`, …).
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// Its numbers.
    pub metrics: Metrics,
}

/// A ratio column: `subject` over `reference`.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// Key in the JSON (`vlnet_tc_vs_kernel`, …).
    pub name: String,
    /// The topology measured.
    pub subject: &'static str,
    /// The topology it is divided by.
    pub reference: &'static str,
    /// `subject / reference`, metric by metric.
    pub metrics: Metrics,
}

/// The whole benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seconds per iperf3 run.
    pub iperf_secs: u32,
    /// Seconds of small-packet generation per topology.
    pub pps_secs: f64,
    /// Each topology, in run order.
    pub topologies: Vec<Measured>,
    /// Ratios between topologies.
    pub ratios: Vec<Ratio>,
}

impl Report {
    /// Builds the report, computing each topology's receive costs (with
    /// `plain` in the run) and `subject / reference` for each pair of names
    /// in `pairs` that was measured.
    #[must_use]
    pub fn new(
        iperf_secs: u32,
        pps_secs: f64,
        topologies: Vec<Measured>,
        pairs: &[(&'static str, &'static str)],
    ) -> Self {
        let topologies = with_receive_costs(topologies);
        let find = |name: &str| topologies.iter().find(|t| t.name == name);
        let ratios = pairs
            .iter()
            .filter_map(|&(subject, reference)| {
                let (s, r) = (find(subject)?, find(reference)?);
                Some(Ratio {
                    name: format!("{subject}_vs_{reference}").replace('-', "_"),
                    subject,
                    reference,
                    metrics: s.metrics.ratio_to(&r.metrics),
                })
            })
            .collect();
        Self {
            iperf_secs,
            pps_secs,
            topologies,
            ratios,
        }
    }

    /// The JSON document: `{"iperf_secs", "pps_secs", "topologies": {name:
    /// metrics}, "ratios": {name: metrics}, "references": {name: "a / b"}}`.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let topologies: serde_json::Map<String, serde_json::Value> = self
            .topologies
            .iter()
            .map(|t| (t.name.to_owned(), serde_json::json!(t.metrics)))
            .collect();
        let ratios: serde_json::Map<String, serde_json::Value> = self
            .ratios
            .iter()
            .map(|r| (r.name.clone(), serde_json::json!(r.metrics)))
            .collect();
        let references: serde_json::Map<String, serde_json::Value> = self
            .ratios
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    serde_json::json!(format!("{} / {}", r.subject, r.reference)),
                )
            })
            .collect();
        serde_json::json!({
            "iperf_secs": self.iperf_secs,
            "pps_secs": self.pps_secs,
            "topologies": topologies,
            "ratios": ratios,
            "references": references,
        })
    }

    /// The table: one row per metric, one column per topology, then one per
    /// ratio; a legend of the topologies and ratios below it.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{:<LABEL_WIDTH$}", "metric");
        for t in &self.topologies {
            let _ = write!(out, " {:>12}", t.name);
        }
        for (i, _) in self.ratios.iter().enumerate() {
            let _ = write!(out, " {:>8}", format!("ratio{}", i + 1));
        }
        out.push('\n');
        let shown = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| NOT_MEASURED.to_owned(), |v| format!("{v:.digits$}"))
        };
        for (label, better, value) in ROWS {
            let _ = write!(out, "{label:<LABEL_WIDTH$}");
            for t in &self.topologies {
                let _ = write!(out, " {:>12}", shown(value(&t.metrics), 3));
            }
            for r in &self.ratios {
                let v = value(&r.metrics);
                let _ = write!(out, " {:>7}", shown(v, 2));
                out.push(match (v, better) {
                    (None, _) => ' ',
                    (Some(_), Better::Higher) => '↑',
                    (Some(_), Better::Lower) => '↓',
                });
            }
            out.push('\n');
        }
        out.push('\n');
        for t in &self.topologies {
            let _ = writeln!(out, "{:>12}: {}", t.name, t.description);
        }
        for (i, r) in self.ratios.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:>12}: {} / {}",
                format!("ratio{}", i + 1),
                r.subject,
                r.reference
            );
        }
        out.push_str("(↑: higher is better, ↓: lower is better");
        if self
            .topologies
            .iter()
            .any(|t| t.metrics.small_packets.is_none())
        {
            let _ = write!(
                out,
                "; {NOT_MEASURED}: not measured, the generator's VXLAN frames cannot enter \
                 a WireGuard tunnel"
            );
        }
        out.push_str(")\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(k: f64) -> Metrics {
        Metrics {
            tcp_1_stream_gbit_s: 10.0 * k,
            tcp_4_streams_gbit_s: 20.0 * k,
            tcp_4_streams_one_cpu_gbit_s: 12.0 * k,
            ping_rtt_avg_ms: 0.1 * k,
            ping_rtt_p50_ms: 0.09 * k,
            small_packets: Some(SmallPackets {
                udp64_delivered_mpps: 1.0 * k,
                udp64_generated_mpps: 2.0 * k,
                udp64_delivered_fraction: 0.5,
                udp64_decapsulated_mpps: 3.0 * k,
                udp64_at_vm_port_mpps: 2.5 * k,
                udp64_decap_run_generated_mpps: 4.0 * k,
                udp64_fed_decapsulated_mpps: 5.0 * k,
                udp64_fed_at_vm_port_mpps: 1.5 * k,
                udp64_fed_generated_mpps: 6.0 * k,
                udp64_receive_us: None,
            }),
        }
    }

    /// The cells after `label` in `table`'s row that starts with it.
    fn cells<'a>(table: &'a str, label: &str) -> Vec<&'a str> {
        let row = table
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_default();
        row.split_whitespace()
            .skip(label.split_whitespace().count())
            .collect()
    }

    fn measured(name: &'static str, metrics: Metrics) -> Measured {
        Measured {
            name,
            description: "d",
            metrics,
        }
    }

    fn report() -> Report {
        Report::new(
            5,
            2.0,
            vec![
                measured("kernel", metrics(1.0)),
                measured("vlnet-tc", metrics(2.0)),
            ],
            &[("vlnet-tc", "kernel"), ("vlnet-xdp", "kernel")],
        )
    }

    /// `kernel-wggo` and `vlnet-wg` without small-packet runs.
    fn encrypted_report() -> Report {
        let tunnelled = |k| Metrics {
            small_packets: None,
            ..metrics(k)
        };
        Report::new(
            5,
            2.0,
            vec![
                measured("kernel", metrics(1.0)),
                measured("kernel-wggo", tunnelled(1.0)),
                measured("vlnet-wg", tunnelled(0.5)),
            ],
            &[("vlnet-wg", "kernel-wggo"), ("vlnet-wg", "kernel")],
        )
    }

    #[test]
    fn ratios_divide_metric_by_metric_and_skip_missing_topologies() {
        let r = report();
        assert_eq!(r.ratios.len(), 1);
        let m = &r.ratios[0].metrics;
        assert!((m.tcp_1_stream_gbit_s - 2.0).abs() < 1e-9);
        assert!((m.ping_rtt_avg_ms - 2.0).abs() < 1e-9);
        let small = m.small_packets.unwrap_or_else(|| panic!("{m:?}"));
        assert!((small.udp64_delivered_fraction - 1.0).abs() < 1e-9);
        assert!((small.udp64_decapsulated_mpps - 2.0).abs() < 1e-9);
        assert!((small.udp64_fed_decapsulated_mpps - 2.0).abs() < 1e-9);
        assert_eq!(r.ratios[0].name, "vlnet_tc_vs_kernel");
    }

    #[test]
    fn receive_costs_are_set_against_plain_in_the_same_run() {
        let r = Report::new(
            5,
            2.0,
            vec![
                // Decapsulated 1 Mpps: 1 µs per frame.
                measured("plain", metrics(1.0 / 3.0)),
                // 0.25 Mpps: 4 µs, 3 beyond plain's.
                measured("kernel", metrics(1.0 / 12.0)),
                // 0.5 Mpps: 2 µs, 1 beyond.
                measured("vlnet-xdp", metrics(1.0 / 6.0)),
            ],
            &[("vlnet-xdp", "kernel"), ("vlnet-xdp", "plain")],
        );
        let cost = |name: &str| {
            let s = r.topologies.iter().find(|t| t.name == name).unwrap();
            let s = s.metrics.small_packets.unwrap();
            s.udp64_receive_us
        };
        let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 1e-9);
        assert_eq!(cost("plain"), None);
        assert!(near(cost("kernel"), 3.0), "{:?}", cost("kernel"));
        assert!(near(cost("vlnet-xdp"), 1.0), "{:?}", cost("vlnet-xdp"));
        let vs_kernel = r.ratios[0].metrics.small_packets.unwrap();
        assert!(near(vs_kernel.udp64_receive_us, 1.0 / 3.0), "{vs_kernel:?}");
        // Against plain, which has none: not a number but absent.
        let vs_plain = r.ratios[1].metrics.small_packets.unwrap();
        assert_eq!(vs_plain.udp64_receive_us, None);
        let t = r.table();
        assert_eq!(
            cells(&t, "64B receiving host, µs/frame"),
            ["-", "3.000", "1.000", "0.33↓", "-"],
            "{t}"
        );
        let j = r.to_json();
        assert!(j["topologies"]["plain"].get("udp64_receive_us").is_none());
        let xdp = j["topologies"]["vlnet-xdp"]["udp64_receive_us"].as_f64();
        assert!(near(xdp, 1.0), "{j:#}");
    }

    #[test]
    fn json_has_topologies_ratios_and_references() {
        let j = report().to_json();
        assert_eq!(j["topologies"]["kernel"]["tcp_1_stream_gbit_s"], 10.0);
        assert_eq!(
            j["ratios"]["vlnet_tc_vs_kernel"]["tcp_4_streams_gbit_s"],
            2.0
        );
        assert_eq!(j["references"]["vlnet_tc_vs_kernel"], "vlnet-tc / kernel");
        assert_eq!(
            j["ratios"]["vlnet_tc_vs_kernel"]["udp64_decapsulated_mpps"],
            2.0
        );
    }

    #[test]
    fn table_has_a_row_per_metric() {
        let t = report().table();
        assert!(t.contains("TCP 4 streams (Gbit/s)"), "{t}");
        assert!(t.contains("64B decapsulated (Mpps)"), "{t}");
        assert!(t.contains("64B delivered to the VM port (Mpps)"), "{t}");
        assert!(t.contains("ratio1: vlnet-tc / kernel"), "{t}");
        assert!(
            t.lines().nth(1).is_some_and(|l| l.contains("10.000")),
            "{t}"
        );
        assert!(!t.contains("not measured"), "{t}");
    }

    #[test]
    fn topologies_without_small_packets_have_tcp_and_ping_only() {
        let r = encrypted_report();
        let wg = &r.ratios[0].metrics;
        assert!((wg.tcp_1_stream_gbit_s - 0.5).abs() < 1e-9);
        assert!((wg.ping_rtt_p50_ms - 0.5).abs() < 1e-9);
        assert_eq!(wg.small_packets, None);
        assert_eq!(r.ratios[1].metrics.small_packets, None);

        let j = r.to_json();
        assert_eq!(j["topologies"]["kernel-wggo"]["tcp_1_stream_gbit_s"], 10.0);
        assert!(j["topologies"]["kernel-wggo"]
            .get("udp64_delivered_mpps")
            .is_none());
        assert_eq!(j["topologies"]["kernel"]["udp64_delivered_mpps"], 1.0);
        assert_eq!(
            j["ratios"]["vlnet_wg_vs_kernel_wggo"]["tcp_4_streams_gbit_s"],
            0.5
        );
        assert_eq!(
            j["references"]["vlnet_wg_vs_kernel_wggo"],
            "vlnet-wg / kernel-wggo"
        );

        let t = r.table();
        assert_eq!(
            cells(&t, "64B decapsulated (Mpps)"),
            ["3.000", "-", "-", "-", "-"],
            "{t}"
        );
        assert!(t.contains("ratio1: vlnet-wg / kernel-wggo"), "{t}");
        assert!(t.contains("-: not measured"), "{t}");
    }
}
