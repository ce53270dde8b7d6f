//! Running `vmscope run …` as a child process and timing it from outside: spawn, first
//! byte on its standard output, exit.

use super::MeasureError;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// One timed guest run.
#[derive(Clone, Debug)]
pub struct GuestRun {
    /// Seconds from spawning the process to the first byte of guest output.
    pub first_output_s: Option<f64>,
    /// Seconds from spawning the process to its exit.
    pub exit_s: f64,
    /// The process's exit code.
    pub code: Option<i32>,
    /// Everything it printed.
    pub stdout: Vec<u8>,
    /// What `--stats-json` wrote.
    pub stats: serde_json::Value,
}

/// Runs `cmd` to completion and returns its wall time in milliseconds; a failure names
/// `what` and carries the command's standard error.
pub fn timed(cmd: &mut Command, what: &str) -> Result<f64, MeasureError> {
    let start = Instant::now();
    let out = cmd.output().map_err(|source| MeasureError::Spawn { bin: cmd.get_program().into(), source })?;
    if !out.status.success() {
        return Err(MeasureError::GuestFailed {
            args: what.into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// Runs `bin run ARGS --stats-json …` and times it.
pub fn run_guest(bin: &Path, args: &[&str]) -> Result<GuestRun, MeasureError> {
    let stats_path = std::env::temp_dir().join(format!(
        "vmscope-measure-{}-{}.json",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    ));
    let start = Instant::now();
    let mut child = Command::new(bin)
        .arg("run")
        .args(args)
        .arg("--stats-json")
        .arg(&stats_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| MeasureError::Spawn { bin: bin.into(), source })?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut out = Vec::new();
    let mut first_output_s = None;
    let mut buf = [0u8; 4096];
    loop {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                first_output_s.get_or_insert_with(|| start.elapsed().as_secs_f64());
                out.extend_from_slice(&buf[..n]);
            }
        }
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait().map_err(|source| MeasureError::Spawn { bin: bin.into(), source })?;
    let exit_s = start.elapsed().as_secs_f64();
    let stats = std::fs::read(&stats_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let _ = std::fs::remove_file(&stats_path);
    let Some(stats) = stats else {
        return Err(MeasureError::GuestFailed {
            args: args.join(" "),
            detail: format!("no statistics were written; stderr: {}", err.trim()),
        });
    };
    Ok(GuestRun { first_output_s, exit_s, code: status.code(), stdout: out, stats })
}

impl GuestRun {
    /// Fails unless the guest exited with code 0.
    pub fn ok(self, args: &[&str]) -> Result<Self, MeasureError> {
        if self.code == Some(0) {
            Ok(self)
        } else {
            Err(MeasureError::GuestFailed {
                args: args.join(" "),
                detail: format!("exit status {:?}", self.code),
            })
        }
    }

    /// A number from the statistics JSON.
    pub fn stat(&self, key: &str) -> Option<f64> {
        self.stats.get(key).and_then(serde_json::Value::as_f64)
    }

    /// Exits counted for an exit key's display name (e.g. "io-out port 0x500").
    pub fn exits_named(&self, name: &str) -> u64 {
        let Ok(stats) = serde_json::from_value::<inspect::exits::ExitStats>(self.stats["exits"].clone())
        else {
            return 0;
        };
        stats.per_key.iter().filter(|(k, _)| k.to_string() == name).map(|(_, c)| c.count).sum()
    }
}
