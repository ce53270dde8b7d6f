//! One SVG per report, drawn to be read from a slide: one panel per unit (figures in
//! different units never share an axis, and the unit is in the panel's title and on its
//! axis), one horizontal bar per metric with its label centred on the bar and a gap to
//! the next, rows grouped by what is compared (`batch 16`, `CPL3`) with the group's name
//! above it, the median printed at the bar's end and the min–max range as an error bar.
//! A panel whose figures span more than [`LOG_SPAN`]× uses a log axis and says so.

use super::{MeasureError, Report, Summary};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// A panel whose largest max over its smallest min exceeds this gets a log axis: 30×
/// (a 2,260 ms bar beside 9 ms ones would leave the small ones invisible).
pub const LOG_SPAN: f64 = 30.0;

/// The fraction of a row a bar fills (the rest is the gap to the next).
const BAR: f64 = 0.7;
const WIDTH: u32 = 1100;
const ROW_PX: u32 = 30;
const LABEL_PX: i32 = 470;
const FONT: &str = "sans-serif";

/// Which rows are compared with each other: the first `batch N` or `CPLn` in a name.
fn group_of(metric: &str) -> Option<String> {
    let lower = metric.to_lowercase();
    for key in ["batch ", "cpl"] {
        if let Some(i) = lower.find(key) {
            let digits: String = lower[i + key.len()..].chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                return Some(format!("{}{digits}", &metric[i..i + key.len()]));
            }
        }
    }
    None
}

/// A colour per layer, so the same layer looks the same in every group.
fn colour_of(metric: &str) -> RGBColor {
    let m = metric.to_lowercase();
    if m.contains("shared ring") {
        RGBColor(44, 160, 44)
    } else if m.contains("container") {
        RGBColor(255, 127, 14)
    } else if m.contains("linux") {
        RGBColor(148, 103, 189)
    } else if m.contains("native") {
        RGBColor(127, 127, 127)
    } else {
        RGBColor(31, 119, 180)
    }
}

/// A figure with three significant digits.
fn value_text(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    }
}

/// One row of a panel: a group heading or a metric.
enum Row<'a> {
    Heading(String),
    Bar(&'a Summary),
}

/// The rows of one unit's panel: metrics in report order, gathered by group (groups in
/// order of first appearance), a heading before each group when there are several.
fn rows<'a>(metrics: &[&'a Summary]) -> Vec<Row<'a>> {
    let mut groups: Vec<(Option<String>, Vec<&Summary>)> = vec![];
    for m in metrics {
        let g = group_of(&m.metric);
        match groups.iter_mut().find(|(k, _)| *k == g) {
            Some((_, v)) => v.push(m),
            None => groups.push((g, vec![m])),
        }
    }
    let headed = groups.len() > 1;
    let mut out = vec![];
    for (g, ms) in groups {
        if headed {
            out.push(Row::Heading(g.unwrap_or_else(|| "other".into())));
        }
        out.extend(ms.into_iter().map(Row::Bar));
    }
    out
}

/// Whether a panel with these figures needs a log axis, and the axis range.
fn axis(metrics: &[&Summary]) -> (bool, f64, f64) {
    let hi = metrics.iter().map(|m| m.max.max(m.median)).fold(0.0f64, f64::max).max(1e-9);
    let lo = metrics.iter().map(|m| m.min.min(m.median)).filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    if lo.is_finite() && hi / lo > LOG_SPAN {
        let lo = 10f64.powf(lo.log10().floor());
        // Room right of the largest bar for its value.
        (true, lo, hi * 6.0)
    } else {
        (false, 0.0, hi * 1.3)
    }
}

pub(super) fn draw(report: &Report, path: &Path) -> Result<(), MeasureError> {
    let err = |e: &dyn std::fmt::Display| MeasureError::Plot { path: path.into(), reason: e.to_string() };
    let mut units: Vec<&str> = vec![];
    for m in &report.metrics {
        if !units.contains(&m.unit.as_str()) {
            units.push(&m.unit);
        }
    }
    let panels: Vec<(&str, Vec<&Summary>)> =
        units.iter().map(|u| (*u, report.metrics.iter().filter(|m| m.unit == *u).collect())).collect();
    let heights: Vec<u32> = panels.iter().map(|(_, ms)| 110 + ROW_PX * rows(ms).len() as u32).collect();
    let height = 50 + heights.iter().sum::<u32>();
    let full = SVGBackend::new(path, (WIDTH, height.max(200))).into_drawing_area();
    full.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "vmscope measure {} — host: {} ({}){}",
        report.suite,
        report.environment.host_kind,
        report.environment.cpu_model,
        if report.quick { ", --quick" } else { "" }
    );
    let body = full.titled(&title, (FONT, 24)).map_err(|e| err(&e))?;
    let mut rest = body;
    for ((unit, metrics), h) in panels.iter().zip(&heights) {
        let (area, below) = rest.split_vertically(*h);
        panel(&full, &area, &report.suite, unit, metrics).map_err(|e| err(&e))?;
        rest = below;
    }
    full.present().map_err(|e| err(&e))?;
    Ok(())
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn panel<DB: DrawingBackend>(
    full: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    suite: &str,
    unit: &str,
    metrics: &[&Summary],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let rows = rows(metrics);
    let n = rows.len() as f64;
    let (log, lo, hi) = axis(metrics);
    let scale = if log { ", log scale" } else { "" };
    let caption = format!("{suite} — unit: {unit} — bar: median, whisker: min–max{scale}");
    let x_desc = format!("{unit}{}", if log { " (log scale: labelled gridlines 10× apart)" } else { "" });
    let mut builder = ChartBuilder::on(area);
    builder.caption(caption, (FONT, 19)).margin(10).margin_left(LABEL_PX).x_label_area_size(40);
    let bars: Vec<(f64, &Summary)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| if let Row::Bar(m) = r { Some((i as f64, *m)) } else { None })
        .collect();
    // Row i spans y = n-i-1 .. n-i (the first row on top); its bar fills BAR of it.
    let y_of = |i: f64| n - i - 1.0;
    let gap = (1.0 - BAR) / 2.0;
    let label_style = TextStyle::from((FONT, 16).into_font()).color(&BLACK);
    let anchor_right = label_style.pos(Pos::new(HPos::Right, VPos::Center));
    let anchor_left = label_style.pos(Pos::new(HPos::Left, VPos::Center));
    let heading_style = TextStyle::from((FONT, 17).into_font().style(FontStyle::Bold))
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    macro_rules! body {
        ($chart:ident) => {{
            $chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(0)
                .x_label_style((FONT, 15))
                .x_label_formatter(&|v: &f64| value_text(*v))
                .axis_desc_style((FONT, 16))
                .x_desc(x_desc.as_str())
                .draw()?;
            for (i, m) in &bars {
                let y = y_of(*i);
                let colour = colour_of(&m.metric);
                $chart.draw_series(std::iter::once(Rectangle::new(
                    [(lo, y + gap), (m.median.max(lo), y + 1.0 - gap)],
                    colour.mix(0.8).filled(),
                )))?;
                let (a, b) = (m.min.max(lo), m.max.max(lo));
                let mid = y + 0.5;
                let cap = BAR / 4.0;
                for seg in [
                    vec![(a, mid), (b, mid)],
                    vec![(a, mid - cap), (a, mid + cap)],
                    vec![(b, mid - cap), (b, mid + cap)],
                ] {
                    $chart.draw_series(std::iter::once(PathElement::new(seg, BLACK.stroke_width(1))))?;
                }
                // The label right-aligned left of the axis, the value right of the whisker,
                // both on the bar's centre line (drawn on the whole image: outside the plot).
                let (x0, yc) = $chart.backend_coord(&(lo, mid));
                full.draw(&Text::new(m.metric.clone(), (x0 - 8, yc), anchor_right.clone()))?;
                let (xe, _) = $chart.backend_coord(&(b.max(m.median.max(lo)), mid));
                let value = format!("{} {}", value_text(m.median), m.unit);
                full.draw(&Text::new(value, (xe + 6, yc), anchor_left.clone()))?;
            }
            for (i, r) in rows.iter().enumerate() {
                if let Row::Heading(g) = r {
                    let (x0, yc) = $chart.backend_coord(&(lo, y_of(i as f64) + 0.5));
                    full.draw(&Text::new(g.clone(), (x0 - 8, yc), heading_style.clone()))?;
                }
            }
        }};
    }
    if log {
        let mut chart = builder.build_cartesian_2d((lo..hi).log_scale(), 0.0..n)?;
        body!(chart);
    } else {
        let mut chart = builder.build_cartesian_2d(lo..hi, 0.0..n)?;
        body!(chart);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Environment, Summary};

    fn report(suite: &str, metrics: &[(&str, &str, [f64; 3])]) -> Report {
        Report {
            suite: suite.into(),
            environment: Environment {
                host_kind: inspect::HostKind::Pvm,
                cpu_model: "test CPU".into(),
                vmscope_version: "0".into(),
                cpus: 2,
            },
            quick: true,
            metrics: metrics.iter().map(|(m, u, s)| Summary::of(m, u, s).unwrap()).collect(),
            notes: vec![],
        }
    }

    /// One SVG element's attribute.
    fn attr(element: &str, name: &str) -> Option<f64> {
        let key = format!(" {name}=\"");
        let i = element.find(&key)? + key.len();
        element[i..].split('"').next()?.parse().ok()
    }

    /// What the test reads back out of an SVG: bars (x, y, w, h) and labels (x, y, text),
    /// told apart from the rest by how they are drawn: bars are the filled rectangles with
    /// opacity 0.8, labels (and group headings) the right-anchored texts.
    type Bars = Vec<(f64, f64, f64, f64)>;
    type Labels = Vec<(f64, f64, String)>;

    fn geometry(svg: &str) -> (Bars, Labels) {
        let mut bars = vec![];
        let mut labels = vec![];
        for el in svg.split('<').skip(1) {
            if el.starts_with("rect ") && el.contains(" opacity=\"0.8\"") {
                bars.push((
                    attr(el, "x").unwrap(),
                    attr(el, "y").unwrap(),
                    attr(el, "width").unwrap(),
                    attr(el, "height").unwrap(),
                ));
            } else if el.starts_with("text ") && el.contains("text-anchor=\"end\"") {
                let text = el.split_once('>').map(|(_, t)| t.trim().to_string()).unwrap_or_default();
                labels.push((attr(el, "x").unwrap(), attr(el, "y").unwrap(), text));
            }
        }
        (bars, labels)
    }

    fn drawn(r: &Report) -> String {
        let dir = std::env::temp_dir().join(format!("vmscope-plot-{}-{}", std::process::id(), r.suite));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.svg");
        draw(r, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        svg
    }

    /// Every metric's label sits on its own bar's centre line, left of it; no two bars
    /// overlap, and there is a gap between neighbours.
    fn assert_readable(r: &Report) -> String {
        let svg = drawn(r);
        let (bars, labels) = geometry(&svg);
        assert_eq!(bars.len(), r.metrics.len(), "one bar per metric:\n{svg}");
        for m in &r.metrics {
            let escaped = m.metric.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            let (lx, ly, _) = labels
                .iter()
                .find(|(_, _, t)| *t == escaped)
                .unwrap_or_else(|| panic!("no label {:?} in\n{svg}", m.metric));
            let mine: Vec<_> = bars.iter().filter(|(_, y, _, h)| *ly > *y && *ly < y + h).collect();
            assert_eq!(mine.len(), 1, "{:?}: its centre line crosses {} bars", m.metric, mine.len());
            let (x, y, _, h) = mine[0];
            assert!((ly - (y + h / 2.0)).abs() <= 1.5, "{:?} is not centred on its bar", m.metric);
            assert!(lx < x, "{:?} is not left of its bar", m.metric);
        }
        let mut ys: Vec<(f64, f64)> = bars.iter().map(|(_, y, _, h)| (*y, y + h)).collect();
        ys.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in ys.windows(2) {
            assert!(w[1].0 - w[0].1 >= 4.0, "bars closer than 4 px or overlapping: {w:?}");
        }
        svg
    }

    #[test]
    fn io_batching_plot_groups_by_batch_on_a_log_axis() {
        let mut m = vec![("unikernel UART, 1 byte per exit (65536 B), per exit", "us", [35.0, 39.0, 42.0])];
        let names: Vec<[String; 3]> = [1, 16, 256]
            .iter()
            .map(|b| {
                [
                    format!("unikernel, batch {b} (N exits), whole run"),
                    format!("container, batch {b} (N write syscalls), whole run"),
                    format!("unikernel shared ring, batch {b}, whole run"),
                ]
            })
            .collect();
        for (n, (uk, ct, ring)) in
            names.iter().zip([(2260.0, 36.0, 19.0), (150.0, 38.0, 17.0), (9.2, 36.5, 19.0)])
        {
            m.push((n[0].as_str(), "ms", [uk * 0.95, uk, uk * 1.1]));
            m.push((n[1].as_str(), "ms", [ct * 0.8, ct, ct * 1.7]));
            m.push((n[2].as_str(), "ms", [ring * 0.9, ring, ring * 1.4]));
        }
        let r = report("io-batching", &m);
        let svg = assert_readable(&r);
        assert!(svg.contains("log scale"), "2,260 ms beside 9 ms needs a log axis");
        for heading in ["\nbatch 1\n", "\nbatch 16\n", "\nbatch 256\n"] {
            assert!(svg.contains(heading), "no group heading {heading}");
        }
        assert!(svg.contains("2260 ms") && svg.contains("9.20 ms"), "values at the bar ends");
        assert!(svg.contains("io-batching — unit: ms —") && svg.contains("io-batching — unit: us —"));
    }

    #[test]
    fn exits_plot_keeps_units_apart_and_linear_when_close() {
        let r = report(
            "exits",
            &[
                ("UART byte exit, CPL3 (round trip)", "us", [36.0, 36.5, 37.0]),
                ("UART byte exit, CPL3 (in the VMM)", "ns", [7300.0, 7600.0, 7800.0]),
                ("UART byte, CPL3: KVM exits per op", "per op", [1.0, 1.0, 1.0]),
                ("cpuid, CPL3 (timed in the guest)", "us", [3.9, 4.2, 4.3]),
                ("UART byte exit, CPL0 (round trip)", "us", [20.7, 22.0, 23.6]),
                ("UART byte, CPL0: KVM exits per op", "per op", [1.0, 1.0, 1.0]),
                ("cpuid, CPL0 (timed in the guest)", "us", [4.9, 5.2, 6.8]),
            ],
        );
        let svg = assert_readable(&r);
        assert!(!svg.contains("log scale"), "36 against 4: a linear axis reads better");
        assert!(svg.contains("\nCPL3\n") && svg.contains("\nCPL0\n"));
        for unit in ["unit: us —", "unit: ns —", "unit: per op —"] {
            assert!(svg.contains(unit), "no panel for {unit}");
        }
    }

    #[test]
    fn single_metric_and_zero_values_still_draw() {
        assert_readable(&report("boot", &[("start -> first output, unikernel CPL3", "ms", [4.0, 4.5, 6.0])]));
        assert_readable(&report("x", &[("a", "n", [0.0, 0.0, 0.0]), ("b", "n", [0.0, 1.0, 2.0])]));
    }

    #[test]
    fn groups_and_values_read_well() {
        assert_eq!(group_of("unikernel, batch 16 (257 exits)").as_deref(), Some("batch 16"));
        assert_eq!(group_of("UART byte exit, CPL0 (round trip)").as_deref(), Some("CPL0"));
        assert_eq!(group_of("native process, compute 1000"), None);
        assert_eq!(value_text(2260.0), "2260");
        assert_eq!(value_text(36.55), "36.5");
        assert_eq!(value_text(9.2), "9.20");
        assert_eq!(value_text(0.066), "0.0660");
        assert_eq!(value_text(123456.0), "1.23e5");
    }
}
