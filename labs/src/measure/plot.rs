//! One SVG per report: each metric's median as a bar with its min-max range, grouped by
//! unit so bars on one axis are comparable.

use super::{MeasureError, Report};
use plotters::prelude::*;
use std::path::Path;

pub(super) fn draw(report: &Report, path: &Path) -> Result<(), MeasureError> {
    let err = |e: &dyn std::fmt::Display| MeasureError::Plot { path: path.into(), reason: e.to_string() };
    let mut units: Vec<&str> = report.metrics.iter().map(|m| m.unit.as_str()).collect();
    units.dedup();
    units.sort();
    units.dedup();
    let height = 120 + 40 * report.metrics.len() as u32 + 60 * units.len() as u32;
    let root = SVGBackend::new(path, (960, height.max(240))).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "vmscope measure {} — host: {} ({})",
        report.suite, report.environment.host_kind, report.environment.cpu_model
    );
    let root = root.titled(&title, ("sans-serif", 18)).map_err(|e| err(&e))?;
    let areas = root.split_evenly((units.len().max(1), 1));
    for (area, unit) in areas.iter().zip(&units) {
        let metrics: Vec<_> = report.metrics.iter().filter(|m| m.unit == *unit).collect();
        let max = metrics.iter().map(|m| m.max).fold(0.0f64, f64::max).max(1e-9) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(330)
            .build_cartesian_2d(0.0..max, 0..metrics.len())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(*unit)
            .y_labels(metrics.len())
            .y_label_formatter(&|i| metrics.get(*i).map(|m| m.metric.clone()).unwrap_or_default())
            .draw()
            .map_err(|e| err(&e))?;
        for (i, m) in metrics.iter().enumerate() {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, i), (m.median, i + 1)],
                    BLUE.mix(0.5).filled(),
                )))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m.min, i), (m.max, i)],
                    BLACK.stroke_width(2),
                )))
                .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
