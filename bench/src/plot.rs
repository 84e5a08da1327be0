//! The report's picture: for every workload, throughput and p99 latency by
//! concurrency, one line per system; and each failover's time.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Run;

const ROW_HEIGHT: u32 = 260;

fn colour(system: &str) -> RGBColor {
    match system {
        "cairn" => RGBColor(30, 110, 200),
        "etcd" => RGBColor(220, 120, 20),
        _ => RGBColor(180, 40, 60),
    }
}

/// Writes the plot as SVG to `path`.
pub fn write(path: &Path, runs: &[Run]) -> Result<(), Box<dyn std::error::Error>> {
    let mut panels: Vec<(String, Option<String>)> = Vec::new();
    for r in runs.iter().filter(|r| r.workload != "failover") {
        let key = (r.workload.clone(), r.op.clone());
        if !panels.contains(&key) {
            panels.push(key);
        }
    }
    let failovers: Vec<&Run> = runs.iter().filter(|r| r.workload == "failover").collect();
    let mut levels: Vec<usize> = runs
        .iter()
        .filter(|r| r.workload != "failover")
        .map(|r| r.concurrency)
        .collect();
    levels.sort_unstable();
    levels.dedup();
    let rows = panels.len() + usize::from(!failovers.is_empty());
    let root = SVGBackend::new(path, (1100, ROW_HEIGHT * rows.max(1) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((rows.max(1), 2));
    let x_of = |c: usize| levels.iter().position(|l| *l == c).unwrap_or(0) as f64;
    let x_max = (levels.len().max(2) - 1) as f64 + 0.2;
    let label = |x: &f64| {
        levels
            .get(x.round() as usize)
            .map_or(String::new(), |c| c.to_string())
    };

    for (row, (workload, op)) in panels.iter().enumerate() {
        let name = match op {
            Some(op) => format!("{workload} {op}"),
            None => workload.clone(),
        };
        let series: Vec<&Run> = runs
            .iter()
            .filter(|r| &r.workload == workload && &r.op == op)
            .collect();
        let mut systems: Vec<&str> = series.iter().map(|r| r.system.as_str()).collect();
        systems.dedup();
        for (col, (metric, unit)) in [("throughput", "ops/s"), ("p99 latency", "ms")]
            .iter()
            .enumerate()
        {
            let value = |r: &Run| if col == 0 { r.ops_per_s } else { r.p99_ms };
            let top = series.iter().map(|r| value(r)).fold(1.0f64, f64::max) * 2.0;
            let bottom = (series.iter().map(|r| value(r)).fold(top, f64::min) / 3.0).max(0.01);
            let mut chart = ChartBuilder::on(&areas[row * 2 + col])
                .caption(format!("{name}: {metric}"), ("sans-serif", 18))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.2f64..x_max, (bottom..top).log_scale())?;
            chart
                .configure_mesh()
                .x_labels(levels.len().max(2))
                .x_label_formatter(&label)
                .x_desc("clients")
                .y_desc(*unit)
                .draw()?;
            for system in &systems {
                let points: Vec<(f64, f64)> = series
                    .iter()
                    .filter(|r| r.system == *system)
                    .map(|r| (x_of(r.concurrency), value(r).max(bottom)))
                    .collect();
                let c = colour(system);
                chart
                    .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
                    .label(*system)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                    });
                chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
    }

    if !failovers.is_empty() {
        let area = &areas[panels.len() * 2];
        let samples = |r: &Run| r.samples_ms.clone().unwrap_or_default();
        let n = failovers
            .iter()
            .map(|r| samples(r).len())
            .max()
            .unwrap_or(1)
            .max(2);
        let top = failovers
            .iter()
            .flat_map(|r| samples(r))
            .fold(100.0f64, f64::max)
            * 1.2;
        let mut chart = ChartBuilder::on(area)
            .caption(
                "leader failover: SIGKILL to first acknowledged write",
                ("sans-serif", 18),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..(n as f64 + 1.0), 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("repetition")
            .y_desc("ms")
            .draw()?;
        for r in &failovers {
            let c = colour(&r.system);
            let points: Vec<(f64, f64)> = samples(r)
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64 + 1.0, *v))
                .collect();
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.filled())))?
                .label(r.system.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
