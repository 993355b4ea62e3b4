//! The experiment's plots, as SVG (plotters' SVG backend: no fonts or
//! system libraries needed): one dot plot per metric, a column per setting,
//! a dot per run and a bar at the median.

use std::path::Path;

use plotters::prelude::*;

use super::results::{Results, RunResult, Spread};
use super::setting::Setting;
use crate::LabError;

/// Plot size in pixels.
const SIZE: (u32, u32) = (720, 420);
/// Horizontal distance between the series of one setting.
const SERIES_OFFSET: f64 = 0.18;

/// One set of dots: `(setting index, value)` per run.
struct Series {
    label: &'static str,
    points: Vec<(usize, f64)>,
}

/// One plot: a file name, a title, a y-axis label and its series.
struct Plot {
    file: &'static str,
    title: &'static str,
    y_label: &'static str,
    series: Vec<Series>,
}

/// The series of `metric` over `runs` (runs without a value are left out).
fn series(
    label: &'static str,
    settings: &[Setting],
    runs: &[RunResult],
    metric: fn(&RunResult) -> Option<f64>,
) -> Series {
    let points = runs
        .iter()
        .filter_map(|r| {
            let i = settings.iter().position(|s| *s == r.setting)?;
            Some((i, metric(r)?))
        })
        .collect();
    Series { label, points }
}

/// The plots of `results`; a plot none of whose series has a point is left
/// out.
fn plots(results: &Results) -> Vec<Plot> {
    let (s, r) = (&results.parameters.settings[..], &results.runs[..]);
    let all = vec![
        Plot {
            file: "migration_ms.svg",
            title: "Migration time (QEMU total-time)",
            y_label: "ms",
            series: vec![series("migration", s, r, |r| Some(r.migration_ms))],
        },
        Plot {
            file: "downtime_ms.svg",
            title: "Guest stopped (QEMU) and user without replies",
            y_label: "ms",
            series: vec![
                series("downtime (QEMU)", s, r, |r| Some(r.downtime_ms)),
                series("outage (user's pings)", s, r, |r| Some(r.outage_ms)),
            ],
        },
        Plot {
            file: "pings_lost.svg",
            title: "Pings lost across the move (10 ms interval)",
            y_label: "pings",
            series: vec![series("lost", s, r, |r| Some(f64::from(r.pings_lost)))],
        },
        Plot {
            file: "rtt_ms.svg",
            title: "User's RTT to the guest (median of 30 pings)",
            y_label: "ms",
            series: vec![
                series("before the move", s, r, |r| r.rtt_before_ms),
                series("after the move", s, r, |r| r.rtt_after_ms),
            ],
        },
        Plot {
            file: "throughput_mbps.svg",
            title: "User's TCP throughput to the guest",
            y_label: "Mbit/s",
            series: vec![
                series("before the move", s, r, |r| r.throughput_before_mbps),
                series("after the move", s, r, |r| r.throughput_after_mbps),
            ],
        },
    ];
    all.into_iter()
        .filter(|p| p.series.iter().any(|s| !s.points.is_empty()))
        .collect()
}

/// Renders one plot as an SVG document.
fn render(plot: &Plot, settings: &[Setting]) -> Result<String, String> {
    let top = plot
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let y_max = if top > 0.0 { top * 1.15 } else { 1.0 };
    let n = settings.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        #[allow(clippy::cast_precision_loss, reason = "a handful of settings")]
        let x_range = -0.5..(n as f64 - 0.5);
        let mut chart = ChartBuilder::on(&root)
            .caption(plot.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        let name = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            #[allow(clippy::cast_sign_loss, reason = "negative positions returned above")]
            settings
                .get(i as usize)
                .map_or_else(String::new, |s| s.name().to_owned())
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(4 * n + 1)
            .x_label_formatter(&name)
            .y_desc(plot.y_label)
            .draw()
            .map_err(|e| e.to_string())?;
        #[allow(
            clippy::cast_precision_loss,
            reason = "a handful of series and settings"
        )]
        for (k, series) in plot.series.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            let offset = (k as f64 - (plot.series.len() as f64 - 1.0) / 2.0) * SERIES_OFFSET;
            chart
                .draw_series(
                    series
                        .points
                        .iter()
                        .map(|&(i, v)| Circle::new((i as f64 + offset, v), 4, color.filled())),
                )
                .map_err(|e| e.to_string())?
                .label(series.label)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
            for i in 0..n {
                let values = series.points.iter().filter(|p| p.0 == i).map(|p| p.1);
                if let Some(s) = Spread::of(values) {
                    let x = i as f64 + offset;
                    let bar = [(x - 0.07, s.median), (x + 0.07, s.median)];
                    chart
                        .draw_series(LineSeries::new(bar, color.stroke_width(3)))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Writes every plot of `results` into `dir`; returns their file names.
pub fn write(results: &Results, dir: &Path) -> Result<Vec<String>, LabError> {
    let settings = &results.parameters.settings;
    let mut files = Vec::new();
    for plot in plots(results) {
        let svg = render(&plot, settings)
            .map_err(|e| LabError::Invalid(format!("drawing {}: {e}", plot.file)))?;
        let path = dir.join(plot.file);
        std::fs::write(&path, svg)
            .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
        files.push(plot.file.to_owned());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::super::results::tests::{parameters, run};
    use super::*;

    #[test]
    fn every_measured_metric_gets_an_svg_with_the_settings_named() {
        let settings = vec![Setting::Lan, Setting::Vxlan, Setting::VxlanWg];
        let runs = vec![
            run(Setting::Lan, 1, 700.0),
            run(Setting::Vxlan, 1, 800.0),
            run(Setting::VxlanWg, 1, 2500.0),
        ];
        let results = Results::new(parameters(settings.clone()), runs);
        let all = plots(&results);
        let files: Vec<&str> = all.iter().map(|p| p.file).collect();
        assert_eq!(
            files,
            [
                "migration_ms.svg",
                "downtime_ms.svg",
                "pings_lost.svg",
                "rtt_ms.svg",
                "throughput_mbps.svg"
            ]
        );
        let svg = render(&all[0], &settings).unwrap();
        assert!(svg.starts_with("<svg"), "{svg:.100}");
        assert!(svg.contains("Migration time"));
        for s in &settings {
            assert!(
                svg.contains(&format!("\n{}\n</text>", s.name())),
                "{} missing",
                s.name()
            );
        }
        assert_eq!(
            svg.matches("<circle").count(),
            3 + 1,
            "3 runs and the legend"
        );
    }

    #[test]
    fn a_metric_never_measured_gets_no_plot() {
        let mut r = run(Setting::Lan, 1, 700.0);
        r.throughput_before_mbps = None;
        let results = Results::new(parameters(vec![Setting::Lan]), vec![r]);
        assert!(plots(&results)
            .iter()
            .all(|p| p.file != "throughput_mbps.svg"));
    }
}
