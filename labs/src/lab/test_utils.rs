//! Fixtures for the lab engine's tests: reports and work directories made in memory.

use crate::measure::{Environment, Report, Summary};
use std::path::{Path, PathBuf};

/// A report of `suite` from a `host` (`pvm`, `amd-v`, …) with one-sample metrics
/// `(name, unit, median)`.
pub fn report(suite: &str, host: &str, metrics: &[(&str, &str, f64)]) -> Report {
    Report {
        suite: suite.into(),
        environment: Environment {
            host_kind: serde_json::from_value(serde_json::json!(host)).expect("a host kind"),
            cpu_model: "test CPU".into(),
            vmscope_version: "0.1.0".into(),
            cpus: 2,
        },
        quick: false,
        metrics: metrics.iter().map(|(m, u, v)| Summary::of(m, u, &[*v]).expect("one sample")).collect(),
        notes: vec![],
    }
}

/// A fresh, empty directory that removes itself when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory under the system's temporary directory.
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "vmscope-lab-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("a temporary directory");
        Self(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `report` as `file`.
    pub fn put_report(&self, file: &str, report: &Report) {
        std::fs::write(self.0.join(file), serde_json::to_vec_pretty(report).expect("serializes")).unwrap();
    }

    /// Writes a text file.
    pub fn put(&self, file: &str, text: &str) {
        std::fs::write(self.0.join(file), text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
