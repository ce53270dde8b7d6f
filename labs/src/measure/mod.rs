//! `vmscope measure SUITE`: each suite runs guests as child processes, collects samples,
//! and writes `SUITE.json` and `SUITE.svg` into the output directory.

mod anchors;
mod boot;
mod compute;
mod density;
mod exits;
mod io_batching;
mod memory;
mod migration;
mod plot;
mod run;
mod surface;

pub use run::{run_guest, timed, GuestRun};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Errors from a measurement.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// The vmscope binary could not be run.
    #[error("cannot run {bin}")]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// The operating system's error (errno), shown as the cause.
        #[source]
        source: std::io::Error,
    },
    /// A guest run did not end as it should.
    #[error("the guest run `{args}` failed: {detail}")]
    GuestFailed {
        /// The arguments.
        args: String,
        /// What happened.
        detail: String,
    },
    /// Writing results.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error (errno), shown as the cause.
        #[source]
        source: std::io::Error,
    },
    /// Drawing the plot.
    #[error("cannot draw {path}: {reason}")]
    Plot {
        /// The file.
        path: PathBuf,
        /// What was wrong, in words.
        reason: String,
    },
    /// A tool a suite needs is not installed.
    #[error("{tool} is not installed: {hint}")]
    MissingTool {
        /// The tool.
        tool: String,
        /// How to get it.
        hint: String,
    },
    /// No such suite.
    #[error("unknown suite {0:?}: choose from {SUITES:?}")]
    UnknownSuite(String),
}

/// The suites there are.
pub const SUITES: &[&str] =
    &["boot", "exits", "compute", "io-batching", "memory", "surface", "anchors", "density", "migration"];

/// min/median/max of one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// What was measured.
    pub metric: String,
    /// Its unit.
    pub unit: String,
    /// Number of samples.
    pub runs: usize,
    /// Smallest sample.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Largest sample.
    pub max: f64,
    /// Every sample, in run order.
    pub samples: Vec<f64>,
}

impl Summary {
    /// Summarizes `samples`; `None` if there are none.
    pub fn of(metric: &str, unit: &str, samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Some(Self {
            metric: metric.into(),
            unit: unit.into(),
            runs: n,
            min: sorted[0],
            median,
            max: sorted[n - 1],
            samples: samples.to_vec(),
        })
    }
}

/// Where and on what a report was measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// `pvm`, `intel-vtx`, `amd-v` or `unknown`.
    pub host_kind: inspect::HostKind,
    /// The CPU model.
    pub cpu_model: String,
    /// vmscope's version.
    pub vmscope_version: String,
    /// Logical CPUs.
    pub cpus: usize,
}

impl Environment {
    /// This machine.
    pub fn here() -> Self {
        Self {
            host_kind: vmm::host_kind(),
            cpu_model: vmm::host::cpu_model(),
            vmscope_version: env!("CARGO_PKG_VERSION").into(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// A suite's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The suite.
    pub suite: String,
    /// Where it ran.
    pub environment: Environment,
    /// Reduced run (`--quick`).
    pub quick: bool,
    /// The metrics.
    pub metrics: Vec<Summary>,
    /// Notes for the reader (what a figure includes, caveats on this host).
    pub notes: Vec<String>,
}

impl Report {
    /// A table for the terminal.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} on {} ({}), {} CPUs{}\n",
            self.suite,
            self.environment.host_kind,
            self.environment.cpu_model,
            self.environment.cpus,
            if self.quick { ", quick" } else { "" }
        );
        let w = self.metrics.iter().map(|m| m.metric.len()).max().unwrap_or(6).max(6);
        out +=
            &format!("{:<w$} {:>6} {:>12} {:>12} {:>12}  unit\n", "metric", "runs", "min", "median", "max");
        for m in &self.metrics {
            out += &format!(
                "{:<w$} {:>6} {:>12.3} {:>12.3} {:>12.3}  {}\n",
                m.metric, m.runs, m.min, m.median, m.max, m.unit
            );
        }
        for n in &self.notes {
            out += &format!("note: {n}\n");
        }
        out
    }

    /// Writes `SUITE.json` and `SUITE.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), MeasureError> {
        std::fs::create_dir_all(dir).map_err(|source| MeasureError::Write { path: dir.into(), source })?;
        let json = dir.join(format!("{}.json", self.suite));
        let text = serde_json::to_vec_pretty(self).expect("reports serialize");
        std::fs::write(&json, text).map_err(|source| MeasureError::Write { path: json.clone(), source })?;
        let svg = dir.join(format!("{}.svg", self.suite));
        plot::draw(self, &svg)?;
        Ok((json, svg))
    }

    /// Two reports side by side (`vmscope measure --compare`).
    pub fn compare(a: &Report, b: &Report) -> String {
        let mut out = format!(
            "{:<44} {:>14} {:>14} {:>9}\n{:<44} {:>14} {:>14}\n",
            "metric (median)",
            "A",
            "B",
            "B/A",
            "",
            a.environment.host_kind.as_str(),
            b.environment.host_kind.as_str()
        );
        for m in &a.metrics {
            match b.metrics.iter().find(|x| x.metric == m.metric) {
                Some(n) => {
                    let ratio = if m.median != 0.0 { n.median / m.median } else { f64::NAN };
                    out += &format!(
                        "{:<44} {:>11.3} {:<2} {:>11.3} {:<2} {:>8.2}x\n",
                        m.metric, m.median, m.unit, n.median, n.unit, ratio
                    )
                }
                None => out += &format!("{:<44} {:>11.3} {:<2} {:>14}\n", m.metric, m.median, m.unit, "-"),
            }
        }
        out
    }
}

/// How to run a suite.
#[derive(Clone, Debug)]
pub struct Options {
    /// The vmscope binary to run.
    pub bin: PathBuf,
    /// Runs per configuration (defaults per suite when `None`).
    pub runs: Option<usize>,
    /// Reduced version for CI.
    pub quick: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Include the Linux guest where a suite has a row for it and its kernel is cached
    /// (it boots in about a minute on PVM).
    pub linux: bool,
    /// `anchors`: the Firecracker binary (else looked up on PATH).
    pub firecracker: Option<PathBuf>,
    /// `anchors`: the Cloud Hypervisor binary (else looked up on PATH).
    pub cloud_hypervisor: Option<PathBuf>,
}

/// Runs one suite.
pub fn run_suite(name: &str, opts: &Options) -> Result<Report, MeasureError> {
    match name {
        "boot" => boot::run(opts),
        "exits" => exits::run(opts),
        "compute" => compute::run(opts),
        "io-batching" => io_batching::run(opts),
        "memory" => memory::run(opts),
        "surface" => surface::run(opts),
        "anchors" => anchors::run(opts),
        "density" => density::run(opts),
        "migration" => migration::run(opts),
        other => Err(MeasureError::UnknownSuite(other.into())),
    }
}

/// A progress bar (hidden when not wanted).
pub(crate) fn progress(opts: &Options, len: u64, what: &str) -> indicatif::ProgressBar {
    if !opts.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:<28} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        let s = Summary::of("x", "ms", &[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.runs), (1.0, 2.5, 4.0, 4));
        assert!(Summary::of("x", "ms", &[]).is_none());
    }

    #[test]
    fn report_round_trip_and_compare() {
        let r = Report {
            suite: "boot".into(),
            environment: Environment::here(),
            quick: true,
            metrics: vec![Summary::of("start to exit", "ms", &[2.0, 4.0]).unwrap()],
            notes: vec![],
        };
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(r.table().contains("start to exit"));
        assert!(Report::compare(&r, &r).contains("1.00x"));
        let dir = std::env::temp_dir().join(format!("vmscope-labs-test-{}", std::process::id()));
        let (json, svg) = r.write(&dir).unwrap();
        assert!(json.exists());
        assert!(std::fs::read_to_string(svg).unwrap().contains("<svg"));
        std::fs::remove_dir_all(dir).ok();
    }
}
