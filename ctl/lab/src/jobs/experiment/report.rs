//! `report.md`: the experiment's results as a Markdown report that answers,
//! in numbers, what a move costs and what it gains for the user. Pure.

use std::fmt::Write as _;

use super::results::{Results, SettingSummary, Spread};
use crate::primitives::guest_memory::GuestMemory;

/// `median [min–max]` with `decimals`, or `–` when nothing was measured.
fn spread(s: Option<Spread>, decimals: usize) -> String {
    s.map_or_else(
        || "–".to_owned(),
        |s| {
            format!(
                "{:.d$} [{:.d$}–{:.d$}]",
                s.median,
                s.min,
                s.max,
                d = decimals
            )
        },
    )
}

/// A median with `decimals`, or `–`.
fn median(s: Option<Spread>, decimals: usize) -> String {
    s.map_or_else(
        || "–".to_owned(),
        |s| format!("{:.d$}", s.median, d = decimals),
    )
}

/// The answer for one setting, in a sentence or two.
fn answer(s: &SettingSummary, wan_delay_ms: f64) -> String {
    let name = s.setting.name();
    let mut text = format!(
        "- **{name}**: a move took {} ms (median) of migration, {} MiB of memory sent, \
         with {} ms of downtime by QEMU's count; the user lost {} pings, and the longest \
         time without replies the user saw was {} ms.",
        median(s.migration_ms, 0),
        median(s.ram_mib, 0),
        median(s.downtime_ms, 1),
        median(s.pings_lost, 0),
        median(s.outage_ms, 0),
    );
    match (s.rtt_before_ms, s.rtt_after_ms) {
        (Some(before), Some(after)) => {
            let _ = write!(
                text,
                " The user's RTT to the guest went from {:.2} ms to {:.2} ms ({:+.2} ms)",
                before.median,
                after.median,
                after.median - before.median
            );
            if s.setting.has_wan() {
                let _ = write!(text, " with a {wan_delay_ms:.0} ms WAN between the sites");
            }
            text.push('.');
        }
        _ => text.push_str(" The user's RTT was not measured on both sides of the move."),
    }
    if let (Some(before), Some(after)) = (s.throughput_before_mbps, s.throughput_after_mbps) {
        let _ = write!(
            text,
            " TCP throughput to the guest: {:.0} → {:.0} Mbit/s.",
            before.median, after.median
        );
    }
    text
}

/// The guest in a few words: its memory and what keeps it busy.
fn guest(m: &GuestMemory) -> String {
    m.load.map_or_else(
        || {
            format!(
                "{} MiB, idle: most of its memory is zero pages, which a migration sends \
                 as a flag each",
                m.mib
            )
        },
        |l| {
            format!(
                "{} MiB, loaded: {} MiB of it filled with data at boot (a tmpfs file) and \
                 {} MiB/s of that rewritten in place while it runs (busybox `dd` every 0.25 s, \
                 alternating two contents); QEMU's default 128 MiB/s limit on the migration \
                 stream is lifted, so the network is the limit",
                m.mib, l.fill_mib, l.dirty_mib_per_s
            )
        },
    )
}

/// The whole report; `plots` are the plot files' names (beside it).
#[must_use]
pub fn render(results: &Results, plots: &[String]) -> String {
    let p = &results.parameters;
    let mut out =
        String::from("# Live migration of a real QEMU guest: LAN, VXLAN, VXLAN over WireGuard\n\n");
    let _ = writeln!(
        out,
        "{} migration(s) per setting of a QEMU guest (TCG, busybox) from host A to host B \
         while a user at B's site pings it every {} ms. WAN RTT in `vxlan-wg`: {:.0} ms. \
         Medians, with [min–max] over the runs.\n\n\
         Guest: {}.\n",
        p.runs,
        p.ping_interval_ms,
        p.wan_delay_ms,
        guest(&p.guest_memory)
    );
    out.push_str("## Settings\n\n");
    for s in &p.settings {
        let _ = writeln!(
            out,
            "- `{}`: {}. Migration stream: {}.",
            s.name(),
            s.topology(),
            s.migration_path()
        );
    }
    out.push_str("\n## Results\n\n");
    out.push_str(
        "| setting | runs | migration (ms) | downtime (ms) | pings lost | outage (ms) \
         | RTT before (ms) | RTT after (ms) | TCP before (Mbit/s) | TCP after (Mbit/s) \
         | memory sent (MiB) | guest dirtying (MiB/s) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in &results.summary {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.setting.name(),
            s.runs,
            spread(s.migration_ms, 0),
            spread(s.downtime_ms, 1),
            spread(s.pings_lost, 0),
            spread(s.outage_ms, 0),
            spread(s.rtt_before_ms, 2),
            spread(s.rtt_after_ms, 2),
            spread(s.throughput_before_mbps, 0),
            spread(s.throughput_after_mbps, 0),
            spread(s.ram_mib, 0),
            spread(s.dirty_rate_mib_s, 1),
        );
    }
    out.push_str("\n## What the move costs and what it gains\n\n");
    for s in &results.summary {
        out.push_str(&answer(s, p.wan_delay_ms));
        out.push('\n');
    }
    if !plots.is_empty() {
        out.push_str("\n## Plots\n\n");
        for plot in plots {
            let _ = writeln!(out, "![{plot}]({plot})");
        }
    }
    let _ = write!(
        out,
        "\n## How it was measured\n\n\
         - Migration, downtime and memory sent: QEMU's own `query-migrate` (`total-time`, \
           `downtime`, `ram.transferred`).\n\
         - Guest dirtying (loaded guest only): QEMU's `calc-dirty-rate` over 1 s just before \
           each move, sampling 4096 pages per GiB and comparing their contents.\n\
         - Pings lost: `ping -i 0.01` from the user, started 0.5 s before `migrate` and \
           stopped 1 s (plus the WAN RTT) after it completed; requests still in flight at the \
           stop are not counted. Outage: the longest run of unanswered pings × {} ms: what \
           the user sees, beside QEMU's downtime (the time the guest was stopped).\n\
         - RTT: median of 30 pings before and after the move (the guest is emulated by TCG, \
           so its own answer time is part of every RTT).\n\
         - Throughput: one TCP connection from the user for {:.0} s into a busybox `nc` sink \
           in the guest (the guest has no iperf3); under TCG the guest's emulated CPU, not the \
           network, is usually the limit, so compare it between settings, not with line rate.\n\
         - One machine, shared: figures are indicative, their spread is part of the result.\n",
        p.ping_interval_ms, p.throughput_secs
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::results::tests::{parameters, run};
    use super::super::results::Results;
    use super::super::setting::Setting;
    use super::*;

    #[test]
    fn the_report_answers_in_numbers() {
        let r = Results::new(
            parameters(vec![Setting::Lan, Setting::VxlanWg]),
            vec![
                run(Setting::Lan, 1, 700.0),
                run(Setting::VxlanWg, 1, 2100.0),
                run(Setting::VxlanWg, 2, 2300.0),
            ],
        );
        let md = render(&r, &["migration_ms.svg".to_owned()]);
        assert!(
            md.contains("| vxlan-wg | 2 | 2200 [2100–2300] | 10.0 [10.0–10.0] |"),
            "{md}"
        );
        assert!(
            md.contains("from 20.50 ms to 0.40 ms (-20.10 ms) with a 20 ms WAN"),
            "{md}"
        );
        assert!(md.contains("- **lan**: a move took 700 ms"), "{md}");
        assert!(
            md.contains(
                "with 10.0 ms of downtime by QEMU's count; the user lost 3 pings, \
                 and the longest time without replies the user saw was 30 ms"
            ),
            "{md}"
        );
        assert!(md.contains("Guest: 256 MiB, idle"), "{md}");
        assert!(md.contains("| 20 [20–20] | – |"), "{md}");
        assert!(md.contains("![migration_ms.svg](migration_ms.svg)"));
        assert!(md.contains("Migration stream: TCP between the nodes' WireGuard"));
        // Throughput after was not measured in these runs: shown as a gap.
        assert!(md.contains("| 80 [80–80] | – |"), "{md}");
    }

    #[test]
    fn the_report_names_the_loaded_guest() {
        let mut p = parameters(vec![Setting::Vxlan]);
        p.guest_memory = GuestMemory::loaded(1024, 8);
        let mut r = run(Setting::Vxlan, 1, 3000.0);
        r.dirty_rate_mib_s = Some(7.5);
        let md = render(&Results::new(p, vec![r]), &[]);
        assert!(
            md.contains("Guest: 1024 MiB, loaded: 512 MiB of it filled") && md.contains("8 MiB/s"),
            "{md}"
        );
        assert!(md.contains("| 20 [20–20] | 7.5 [7.5–7.5] |"), "{md}");
    }
}
