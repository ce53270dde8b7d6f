//! Picking one figure out of a measurement report by the words in its metric names, so a
//! lab can name "the UART exit at the CPL that runs natively here" without knowing the
//! exact label — or the host — in advance.

use crate::measure::{Report, Summary};
use serde::Deserialize;

/// Which metric of which report stands for a figure.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// The report's file name in the work directory.
    pub file: String,
    /// Every one of these appears in the metric's name (case-insensitive).
    #[serde(default)]
    pub all: Vec<String>,
    /// At least one of these appears in it, if any are given.
    #[serde(default)]
    pub any: Vec<String>,
    /// None of these appear in it.
    #[serde(default)]
    pub not: Vec<String>,
    /// The metric is for the privilege level that runs natively on the report's host
    /// (`CPL3` on PVM, `CPL0` on hardware KVM).
    #[serde(default)]
    pub native_cpl: bool,
    /// The metric is for the *other* privilege level (`CPL0` on PVM, `CPL3` on hardware
    /// KVM): the neighbouring figure a learner may read by mistake.
    #[serde(default)]
    pub other_cpl: bool,
    /// Which median to take when several metrics match.
    #[serde(default)]
    pub pick: Pick,
    /// Divide the median by the number that follows this text in the metric's name
    /// (`"compute "`: a time per number sieved, whatever N the run used).
    pub per_number_after: Option<String>,
}

/// Which of several matching metrics to take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pick {
    /// The first in the report's order.
    #[default]
    First,
    /// The smallest median.
    Min,
    /// The largest median.
    Max,
}

/// A figure taken out of a report: the value and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The value (the median, per `per_number_after` if asked).
    pub value: f64,
    /// The smallest sample, scaled like `value`.
    pub low: f64,
    /// The largest sample, scaled like `value`.
    pub high: f64,
    /// Its unit (the metric's; "per N" is left to the wording).
    pub unit: String,
    /// The metric's name.
    pub metric: String,
}

impl Figure {
    /// How far the samples reach either side of the median, relative to it: half the
    /// min-max range over the value (0.1: ±10 %). How far one run of the learner's own may
    /// fairly stray from the figure.
    pub fn spread(&self) -> f64 {
        if self.value > 0.0 && self.high >= self.low {
            (self.high - self.low) / 2.0 / self.value
        } else {
            0.0
        }
    }
}

impl Selector {
    /// The words the metric name must carry, for messages.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.all.iter().map(|w| format!("{w:?}")).collect();
        if !self.any.is_empty() {
            parts.push(format!("one of {:?}", self.any));
        }
        if self.native_cpl {
            parts.push("the native CPL".into());
        }
        if self.other_cpl {
            parts.push("the CPL that is not native".into());
        }
        format!("a metric in {} with {}", self.file, parts.join(" and "))
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.file.trim().is_empty() || self.file.contains('/') {
            return Err("`file` must be a file name in the lab directory".into());
        }
        if self.all.is_empty() && self.any.is_empty() {
            return Err("needs `all` or `any`: words that pick the metric".into());
        }
        if self.native_cpl && self.other_cpl {
            return Err("`native_cpl` and `other_cpl` exclude each other".into());
        }
        Ok(())
    }

    fn matches(&self, report: &Report, m: &Summary) -> bool {
        let name = m.metric.to_lowercase();
        let has = |w: &String| name.contains(&w.to_lowercase());
        self.all.iter().all(has)
            && (self.any.is_empty() || self.any.iter().any(has))
            && !self.not.iter().any(has)
            && (!self.native_cpl
                || name.contains(&format!("cpl{}", report.environment.host_kind.native_ring())))
            && (!self.other_cpl
                || name.contains(&format!("cpl{}", 3 - report.environment.host_kind.native_ring())))
    }

    /// The figure in `report`, or a sentence saying why there is none.
    pub fn pick(&self, report: &Report) -> Result<Figure, String> {
        let mut found: Vec<&Summary> = report.metrics.iter().filter(|m| self.matches(report, m)).collect();
        match self.pick {
            Pick::First => {}
            Pick::Min => found.sort_by(|a, b| a.median.total_cmp(&b.median)),
            Pick::Max => found.sort_by(|a, b| b.median.total_cmp(&a.median)),
        }
        let m = found
            .first()
            .ok_or_else(|| format!("no metric in {} matches: wanted {}", self.file, self.describe()))?;
        let mut n = 1.0;
        if let Some(prefix) = &self.per_number_after {
            n = number_after(&m.metric, prefix)
                .filter(|n| *n > 0.0)
                .ok_or_else(|| format!("the metric {:?} has no number after {prefix:?}", m.metric))?;
        }
        Ok(Figure {
            value: m.median / n,
            low: m.min / n,
            high: m.max / n,
            unit: m.unit.clone(),
            metric: m.metric.clone(),
        })
    }
}

/// The integer right after `prefix` in `text` ("compute 20000000" → 2e7).
fn number_after(text: &str, prefix: &str) -> Option<f64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// How many base units (seconds, bytes) one `unit` is; `None` for a unit without a scale
/// (a count, a ratio), which converts only to itself.
fn scale(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

fn dimension(unit: &str) -> &'static str {
    match unit {
        "ns" | "us" | "µs" | "ms" | "s" => "time",
        "B" | "KiB" | "MiB" | "GiB" => "bytes",
        _ => "other",
    }
}

/// `value` in `from` expressed in `to`; `None` when the units do not convert.
pub fn convert(value: f64, from: &str, to: &str) -> Option<f64> {
    if from == to {
        return Some(value);
    }
    match (scale(from), scale(to)) {
        (Some(a), Some(b)) if dimension(from) == dimension(to) => Some(value * a / b),
        _ => None,
    }
}

/// `value` in `unit` in its dimension's base unit (seconds, bytes), so figures reported in
/// different units compare; a unit without a scale stays as it is.
pub fn in_base_unit(value: f64, unit: &str) -> f64 {
    value * scale(unit).unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::test_utils::report;

    fn sel(toml_text: &str) -> Selector {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn picks_by_words_native_cpl_and_median() {
        let r = report(
            "exits",
            "pvm",
            &[
                ("UART byte exit, CPL3 (round trip)", "us", 36.0),
                ("UART byte exit, CPL0 (round trip)", "us", 19.0),
            ],
        );
        let s = sel("file = \"exits.json\"\nall = [\"uart\", \"round trip\"]\nnative_cpl = true");
        assert_eq!(s.pick(&r).unwrap().value, 36.0);
        let mut hw = r.clone();
        hw.environment.host_kind = inspect::HostKind::AmdV;
        assert_eq!(s.pick(&hw).unwrap().value, 19.0);
        let s = sel("file = \"exits.json\"\nall = [\"uart\"]\npick = \"min\"");
        assert_eq!(s.pick(&r).unwrap().metric, "UART byte exit, CPL0 (round trip)");
        let s = sel("file = \"exits.json\"\nany = [\"cpuid\", \"mmio\"]");
        assert!(s.pick(&r).unwrap_err().contains("no metric in exits.json"));
        let s = sel("file = \"exits.json\"\nall = [\"uart\"]\nnot = [\"cpl3\"]");
        assert_eq!(s.pick(&r).unwrap().value, 19.0);
        let s = sel("file = \"exits.json\"\nall = [\"uart\"]\nother_cpl = true");
        assert_eq!(s.pick(&r).unwrap().value, 19.0);
        assert_eq!(s.pick(&hw).unwrap().value, 36.0);
        let both = sel("file = \"e.json\"\nall = [\"uart\"]\nother_cpl = true\nnative_cpl = true");
        assert!(both.validate().unwrap_err().contains("exclude each other"));
    }

    #[test]
    fn per_number_after_divides_by_the_n_in_the_name() {
        let r = report("compute", "pvm", &[("unikernel CPL0, compute 200000", "ms", 6000.0)]);
        let s = sel("file = \"c.json\"\nall = [\"CPL0\"]\nper_number_after = \"compute \"");
        let f = s.pick(&r).unwrap();
        assert_eq!((f.value, f.low, f.high), (0.03, 0.03, 0.03));
        assert_eq!(f.spread(), 0.0);
        let r = report("compute", "pvm", &[]);
        let mut r = r;
        r.metrics.push(
            crate::measure::Summary::of("unikernel CPL0, compute 100", "ms", &[8.0, 10.0, 12.0]).unwrap(),
        );
        let f = s.pick(&r).unwrap();
        assert_eq!((f.value, f.low, f.high), (0.1, 0.08, 0.12));
        assert!((f.spread() - 0.2).abs() < 1e-12);
        let s = sel("file = \"c.json\"\nall = [\"CPL0\"]\nper_number_after = \"batch \"");
        assert!(s.pick(&r).unwrap_err().contains("no number after"));
    }

    #[test]
    fn units_convert_within_a_dimension_only() {
        assert_eq!(convert(1.5, "ms", "us"), Some(1500.0));
        assert_eq!(convert(2048.0, "KiB", "MiB"), Some(2.0));
        assert_eq!(convert(3.0, "syscalls", "syscalls"), Some(3.0));
        assert_eq!(convert(1.0, "ms", "MiB"), None);
        assert_eq!(convert(1.0, "count", "ms"), None);
        assert_eq!(in_base_unit(2.0, "KiB"), 2048.0);
        assert_eq!(in_base_unit(7.0, "syscalls"), 7.0);
    }
}
