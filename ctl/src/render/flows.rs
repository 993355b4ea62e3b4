//! `vlnet ctl flows`: one row per inner flow.

use vlnet_dataplane::flows::FlowRecord;

use super::{bytes, millis, table, Align};

/// One row per flow: its endpoints (local = behind this node), the VTEP the
/// remote end is behind, RTT (min / smoothed / last) and bytes each way.
#[must_use]
pub fn flows(flows: &[FlowRecord]) -> String {
    if flows.is_empty() {
        return "no flows tracked (is node.flow_tracking on, and traffic crossing the tunnel?)\n"
            .to_owned();
    }
    let rtt = |ns: Option<u64>| ns.map_or_else(|| "-".to_owned(), millis);
    let rows: Vec<Vec<String>> = flows
        .iter()
        .map(|f| {
            vec![
                f.vni.to_string(),
                f.protocol_name(),
                endpoint(f.local_ip, f.local_port),
                endpoint(f.remote_ip, f.remote_port),
                f.remote_vtep
                    .map_or_else(|| "(flooded)".to_owned(), |v| v.to_string()),
                rtt(f.rtt_min_ns),
                rtt(f.srtt_ns),
                rtt(f.rtt_last_ns),
                f.rtt_samples.to_string(),
                bytes(f.tx_bytes),
                bytes(f.rx_bytes),
                format!("{:.0} s", f.idle_secs),
            ]
        })
        .collect();
    table(
        &[
            ("VNI", Align::Right),
            ("PROTO", Align::Left),
            ("LOCAL", Align::Left),
            ("REMOTE", Align::Left),
            ("VIA VTEP", Align::Left),
            ("RTT MIN", Align::Right),
            ("RTT SMOOTH", Align::Right),
            ("RTT LAST", Align::Right),
            ("SAMPLES", Align::Right),
            ("TX", Align::Right),
            ("RX", Align::Right),
            ("IDLE", Align::Right),
        ],
        &rows,
    )
}

/// `192.0.2.1:80`, `[2001:db8::1]:80`.
fn endpoint(ip: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn flows_table() {
        let flow = FlowRecord {
            vni: 100,
            protocol: 6,
            local_ip: "192.0.2.10".parse().unwrap(),
            local_port: 5201,
            remote_ip: "2001:db8::9".parse().unwrap(),
            remote_port: 40000,
            local_mac: "02:00:00:00:00:01".parse().unwrap(),
            remote_vtep: Some("198.18.1.2".parse().unwrap()),
            tx_packets: 10,
            tx_bytes: 1_572_864,
            rx_packets: 5,
            rx_bytes: 700,
            rtt_samples: 3,
            rtt_min_ns: Some(20_100_000),
            rtt_last_ns: Some(20_500_000),
            srtt_ns: Some(20_250_000),
            age_secs: 12.0,
            idle_secs: 0.4,
        };
        let unsampled = FlowRecord {
            protocol: 17,
            remote_vtep: None,
            rtt_samples: 0,
            rtt_min_ns: None,
            rtt_last_ns: None,
            srtt_ns: None,
            ..flow.clone()
        };
        assert_eq!(
            flows(&[flow, unsampled]),
            "\
VNI  PROTO  LOCAL            REMOTE               VIA VTEP     RTT MIN  RTT SMOOTH  RTT LAST  SAMPLES       TX     RX  IDLE
100  tcp    192.0.2.10:5201  [2001:db8::9]:40000  198.18.1.2  20.10 ms    20.25 ms  20.50 ms        3  1.5 MiB  700 B   0 s
100  udp    192.0.2.10:5201  [2001:db8::9]:40000  (flooded)          -           -         -        0  1.5 MiB  700 B   0 s
"
        );
        assert!(flows(&[]).starts_with("no flows"));
    }
}
