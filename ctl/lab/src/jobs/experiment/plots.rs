//! The experiment's plots, as SVG (plotters' SVG backend: no fonts or
//! system libraries needed): one dot plot per metric, a column per setting,
//! a dot per run and a bar at the median, and the legend in a strip of its
//! own below the chart, where it hides no point.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::results::{Results, RunResult, Spread};
use super::setting::Setting;
use crate::LabError;

/// Plot size in pixels.
const SIZE: (u32, u32) = (720, 420);
/// Horizontal distance between the series of one setting.
const SERIES_OFFSET: f64 = 0.18;
/// Height of the legend strip below the chart, pixels.
const LEGEND_HEIGHT: u32 = 28;
/// Chart margin, pixels.
const MARGIN: u32 = 12;
/// Width of the y-axis labels' area, pixels.
const Y_LABEL_AREA: u32 = 64;
/// The legend's font.
const LEGEND_FONT: (&str, u32) = ("sans-serif", 14);

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

/// Draws the legend across `area`, one dot and label per series, aligned
/// with the plotting area's left edge.
fn legend(area: &DrawingArea<SVGBackend<'_>, Shift>, series: &[Series]) -> Result<(), String> {
    let middle = i32::try_from(LEGEND_HEIGHT / 2).map_err(|e| e.to_string())?;
    let mut x = i32::try_from(MARGIN + Y_LABEL_AREA).map_err(|e| e.to_string())?;
    for (k, s) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        area.draw(&Circle::new((x + 4, middle), 4, color.filled()))
            .map_err(|e| e.to_string())?;
        let font: TextStyle<'_> = LEGEND_FONT.into_font().into();
        let (width, height) = area
            .estimate_text_size(s.label, &font)
            .map_err(|e| e.to_string())?;
        let height = i32::try_from(height).map_err(|e| e.to_string())?;
        area.draw(&Text::new(
            s.label,
            (x + 14, middle - height / 2),
            font.clone(),
        ))
        .map_err(|e| e.to_string())?;
        x += 14 + i32::try_from(width).map_err(|e| e.to_string())? + 28;
    }
    Ok(())
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
        let (chart_area, legend_area) = root.split_vertically(SIZE.1 - LEGEND_HEIGHT);
        #[allow(clippy::cast_precision_loss, reason = "a handful of settings")]
        let x_range = -0.5..(n as f64 - 0.5);
        let mut chart = ChartBuilder::on(&chart_area)
            .caption(plot.title, ("sans-serif", 20))
            .margin(MARGIN)
            .x_label_area_size(36)
            .y_label_area_size(Y_LABEL_AREA)
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
                .map_err(|e| e.to_string())?;
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
        legend(&legend_area, &plot.series)?;
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

    /// The `y` attribute of every `<text>` whose content is `content`.
    fn text_ys(svg: &str, content: &str) -> Vec<f64> {
        svg.split("<text")
            .skip(1)
            .filter(|t| t.contains(&format!(">\n{content}\n</text>")))
            .map(|t| attr(t, "y"))
            .collect()
    }

    /// The number in attribute `name` of the element that starts `element`.
    fn attr(element: &str, name: &str) -> f64 {
        let start = element.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        let len = element[start..].find('"').unwrap();
        element[start..start + len].parse().unwrap()
    }

    #[test]
    fn the_legend_sits_below_the_data_and_the_axis() {
        let settings = vec![Setting::Lan, Setting::Vxlan, Setting::VxlanWg];
        // vxlan-wg has the highest points, the corner a legend inside took.
        let runs = vec![
            run(Setting::Lan, 1, 700.0),
            run(Setting::Vxlan, 1, 800.0),
            run(Setting::VxlanWg, 1, 2500.0),
            run(Setting::VxlanWg, 2, 2400.0),
        ];
        let results = Results::new(parameters(settings.clone()), runs);
        for plot in plots(&results) {
            let svg = render(&plot, &settings).unwrap();
            // The setting names sit below the plotting area, under the x axis.
            let axis_bottom = settings
                .iter()
                .flat_map(|s| text_ys(&svg, s.name()))
                .fold(f64::MIN, f64::max);
            assert!(axis_bottom > 0.0, "{}: no x labels", plot.file);
            let circles: Vec<f64> = svg
                .split("<circle")
                .skip(1)
                .map(|c| attr(c, "cy"))
                .collect();
            let n = plot.series.len();
            let (data, legend) = circles.split_at(circles.len() - n);
            for series in &plot.series {
                for y in text_ys(&svg, &series.label.replace('\'', "&apos;")) {
                    assert!(y > axis_bottom, "{}: legend text at y {y}", plot.file);
                }
            }
            let lowest_data = data.iter().copied().fold(f64::MIN, f64::max);
            for y in legend {
                assert!(
                    *y > axis_bottom && *y > lowest_data,
                    "{}: legend dot at y {y}",
                    plot.file
                );
            }
        }
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
