//! The soak's samples as a CSV file and as an SVG chart (the `plotters` crate, SVG
//! backend only): four panels over time, resident memory by kind, disk against live
//! bytes, descriptors and deleted files held, and the ratios (disk per live byte,
//! write amplification).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::verdict::Sample;

const MIB: f64 = (1u64 << 20) as f64;

/// The CSV header; one row per sample follows, bytes as bytes, absent figures empty.
pub(crate) const CSV_HEADER: &str = "t,ops,rss_anon,rss_file,fds,deleted_open,deleted_mapped,deleted_bytes,disk_bytes,live_bytes,disk_per_live,user_bytes,written_bytes,write_amp";

fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v}"))
}

/// The samples as CSV text.
pub(crate) fn csv(samples: &[Sample]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for x in samples {
        let _ = writeln!(
            s,
            "{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            x.t,
            opt(x.ops),
            x.rss_anon,
            x.rss_file,
            x.fds,
            x.deleted_open.len(),
            x.deleted_mapped.len(),
            x.deleted_bytes,
            x.disk,
            opt(x.live),
            opt(x.disk_per_live().map(|r| (r * 1000.0).round() / 1000.0)),
            opt(x.user_bytes),
            opt(x.written_bytes),
            opt(x.write_amp),
        );
    }
    s
}

/// One line of a panel: its name, colour and points.
struct Curve {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

fn curve(
    name: &'static str,
    color: RGBColor,
    samples: &[Sample],
    f: impl Fn(&Sample) -> Option<f64>,
) -> Curve {
    Curve {
        name,
        color,
        points: samples.iter().filter_map(|s| Some((s.t, f(s)?))).collect(),
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn panel(area: &Area<'_>, title: &str, t_end: f64, curves: &[Curve]) -> Result<(), String> {
    let y_max = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    // Headroom above the highest point, and a non-empty range for an all-zero panel.
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..t_end.max(1.0), 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .light_line_style(WHITE)
        .draw()
        .map_err(|e| e.to_string())?;
    for c in curves {
        let color = c.color;
        chart
            .draw_series(LineSeries::new(
                c.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(c.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

const ORANGE: RGBColor = RGBColor(230, 120, 0);
const PURPLE: RGBColor = RGBColor(130, 50, 170);

/// Draws `samples` into the SVG file `path`, titled `title`.
pub(crate) fn draw(path: &Path, title: &str, samples: &[Sample]) -> Result<(), String> {
    let t_end = samples.last().map_or(1.0, |s| s.t);
    let root = SVGBackend::new(path, (1280, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| e.to_string())?;
    let panels = root.split_evenly((2, 2));
    let memory = [
        curve("RSS anonymous (MiB)", BLUE, samples, |s| {
            Some(s.rss_anon / MIB)
        }),
        curve("RSS file-backed (MiB)", RED, samples, |s| {
            Some(s.rss_file / MIB)
        }),
    ];
    let disk = [
        curve("allocated on disk (MiB)", ORANGE, samples, |s| {
            Some(s.disk / MIB)
        }),
        curve("live keys + values (MiB)", GREEN, samples, |s| {
            s.live.map(|l| l / MIB)
        }),
        curve("kept by deleted files (MiB)", RED, samples, |s| {
            Some(s.deleted_bytes / MIB)
        }),
    ];
    let files = [
        curve("open descriptors", BLUE, samples, |s| Some(s.fds)),
        curve("deleted, open", RED, samples, |s| {
            Some(s.deleted_open.len() as f64)
        }),
        curve("deleted, mapped", PURPLE, samples, |s| {
            Some(s.deleted_mapped.len() as f64)
        }),
    ];
    let ratios = [
        curve("disk / live", ORANGE, samples, Sample::disk_per_live),
        curve("write amplification", BLACK, samples, |s| s.write_amp),
    ];
    let titles: [(&str, &[Curve]); 4] = [
        ("Resident memory", &memory),
        ("Disk", &disk),
        ("Files", &files),
        ("Ratios", &ratios),
    ];
    for (area, (name, curves)) in panels.iter().zip(titles) {
        panel(area, name, t_end, curves)?;
    }
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_and_csv_hold_every_sample() {
        let samples: Vec<Sample> = (1..=5)
            .map(|i| Sample {
                t: f64::from(i),
                rss_anon: 10.0 * MIB,
                rss_file: 5.0 * MIB,
                fds: 12.0,
                deleted_mapped: if i == 3 {
                    vec!["/x/1.sst".into()]
                } else {
                    vec![]
                },
                deleted_bytes: if i == 3 { MIB } else { 0.0 },
                disk: 8.0 * MIB,
                live: (i > 1).then_some(4.0 * MIB),
                ..Sample::default()
            })
            .collect();
        let text = csv(&samples);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0], CSV_HEADER);
        assert_eq!(rows[1], "1.000,,10485760,5242880,12,0,0,0,8388608,,,,,");
        assert!(
            rows[3].contains(",12,0,1,1048576,8388608,4194304,2.25,"),
            "{}",
            rows[3]
        );
        let path = std::env::temp_dir().join(format!("xtask-chart-{}.svg", std::process::id()));
        draw(&path, "test", &samples).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
        assert!(svg.contains("RSS file-backed (MiB)") && svg.contains("disk / live"));
    }
}
