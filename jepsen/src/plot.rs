//! The performance graph of a run, like Jepsen's: latency of every operation
//! over time (log scale, coloured by outcome) above throughput per second,
//! with the fault intervals shaded in both.

use std::path::Path;

use plotters::prelude::*;

use crate::history::{FaultInterval, Op, Status};

fn colour(s: Status) -> RGBColor {
    match s {
        Status::Ok => RGBColor(40, 140, 60),
        Status::Fail => RGBColor(200, 40, 40),
        Status::Info => RGBColor(230, 150, 20),
    }
}

const FAULT_SHADE: RGBColor = RGBColor(120, 120, 200);
const STATUSES: [Status; 3] = [Status::Ok, Status::Fail, Status::Info];

/// Writes the graph as SVG to `path`.
pub fn write(
    path: &Path,
    title: &str,
    ops: &[Op],
    faults: &[FaultInterval],
) -> Result<(), Box<dyn std::error::Error>> {
    let end_s = ops
        .iter()
        .map(|o| o.complete_ms)
        .chain(faults.iter().map(|f| f.end_ms))
        .fold(1.0f64, f64::max)
        / 1000.0;
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (top, bottom) = root.split_vertically(460);

    // Latency (ms, log scale) at invocation time.
    let max_latency = ops
        .iter()
        .map(|o| o.complete_ms - o.invoke_ms)
        .fold(10.0f64, f64::max)
        * 1.5;
    let mut lat = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..end_s, (0.1f64..max_latency).log_scale())?;
    lat.configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (ms)")
        .draw()?;
    for f in faults {
        lat.draw_series(std::iter::once(Rectangle::new(
            [(f.start_ms / 1000.0, 0.1), (f.end_ms / 1000.0, max_latency)],
            FAULT_SHADE.mix(0.18).filled(),
        )))?;
    }
    for status in STATUSES {
        let c = colour(status);
        lat.draw_series(ops.iter().filter(|o| o.status == status).map(|o| {
            let l = (o.complete_ms - o.invoke_ms).max(0.1);
            Circle::new((o.invoke_ms / 1000.0, l), 2, c.mix(0.6).filled())
        }))?
        .label(format!("{status:?}").to_lowercase())
        .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
    }
    lat.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    // Throughput per second, by completion time.
    let buckets = end_s.ceil() as usize + 1;
    let mut counts = vec![[0u32; 3]; buckets];
    for o in ops {
        let b = ((o.complete_ms / 1000.0) as usize).min(buckets - 1);
        let k = STATUSES.iter().position(|s| *s == o.status).unwrap_or(0);
        counts[b][k] += 1;
    }
    let max_rate = counts
        .iter()
        .flat_map(|c| c.iter())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.2;
    let mut thr = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..end_s, 0f64..max_rate)?;
    thr.configure_mesh()
        .x_desc("time (s)")
        .y_desc("ops/s")
        .draw()?;
    for f in faults {
        thr.draw_series(std::iter::once(Rectangle::new(
            [(f.start_ms / 1000.0, 0.0), (f.end_ms / 1000.0, max_rate)],
            FAULT_SHADE.mix(0.18).filled(),
        )))?;
        thr.draw_series(std::iter::once(Text::new(
            f.nemesis.clone(),
            (f.start_ms / 1000.0, max_rate * 0.95),
            ("sans-serif", 12),
        )))?;
    }
    for (k, status) in STATUSES.iter().enumerate() {
        let c = colour(*status);
        thr.draw_series(LineSeries::new(
            counts
                .iter()
                .enumerate()
                .map(|(s, c)| (s as f64 + 0.5, c[k] as f64)),
            c.stroke_width(2),
        ))?;
    }
    root.present()?;
    Ok(())
}
