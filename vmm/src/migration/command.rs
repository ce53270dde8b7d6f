//! `migrate URI [--downtime-ms N] [--max-rounds N]`: the session and gdb `monitor` command.
//! The frontend calls [`execute_line`] before its own parser (as for `snapshot FILE`) and,
//! on success, prints the summary and ends the process: the guest runs on the target.

use super::source::{migrate, MigrateOptions, Migrated, Progress, Summary};
use super::{MigrationError, Uri};
use crate::machine::Machine;
use std::time::Duration;

/// The help line.
pub const HELP: &str = "migrate URI [--downtime-ms N] [--max-rounds N]  move the running guest to `vmscope run --incoming URI` (unix:PATH or tcp:HOST:PORT); this process then ends\n";

/// The longest downtime budget and the most rounds a command may ask for.
const MAX_DOWNTIME_MS: u64 = 60_000;
const MAX_ROUNDS: u32 = 1000;

/// Parses a `migrate` line: `None` when the line is another command.
pub fn parse_line(line: &str) -> Option<Result<(Uri, MigrateOptions), MigrationError>> {
    let mut words = line.split_whitespace();
    if words.next() != Some("migrate") {
        return None;
    }
    Some(parse_args(line, words))
}

fn parse_args<'a>(
    line: &str,
    mut words: impl Iterator<Item = &'a str>,
) -> Result<(Uri, MigrateOptions), MigrationError> {
    let bad = |detail: String| MigrationError::BadUri { uri: line.to_string(), detail };
    let mut opts = MigrateOptions::default();
    let mut uri = None;
    while let Some(w) = words.next() {
        match w {
            "--downtime-ms" => {
                let v = words
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|v| (1..=MAX_DOWNTIME_MS).contains(v));
                opts.downtime = Duration::from_millis(
                    v.ok_or_else(|| bad(format!("--downtime-ms takes 1 to {MAX_DOWNTIME_MS}")))?,
                );
            }
            "--max-rounds" => {
                let v = words.next().and_then(|v| v.parse::<u32>().ok()).filter(|v| *v <= MAX_ROUNDS);
                opts.max_rounds = v.ok_or_else(|| bad(format!("--max-rounds takes 0 to {MAX_ROUNDS}")))?;
            }
            w if uri.is_none() && !w.starts_with("--") => uri = Some(w.parse::<Uri>()?),
            w => return Err(bad(format!("unexpected {w:?}; usage: {}", HELP.trim_end()))),
        }
    }
    let uri = uri.ok_or_else(|| bad(format!("no address; usage: {}", HELP.trim_end())))?;
    Ok((uri, opts))
}

/// Runs a `migrate` line against `machine`; `None` when the line is another command.
pub fn execute_line<'m>(
    machine: &'m Machine,
    line: &str,
    progress: &mut dyn FnMut(&Progress),
) -> Option<Result<Migrated<'m>, MigrationError>> {
    let parsed = parse_line(line)?;
    Some(parsed.and_then(|(uri, opts)| migrate(machine, &uri, &opts, progress)))
}

/// Ends the source process once its guest runs on the target (the vCPUs are still held:
/// the guest must never run twice), after flushing what it printed. Status 0.
pub fn end_source() -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(0)
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |us: u64| us as f64 / 1e3;
        writeln!(
            f,
            "migrated to {}: total {:.1} ms, downtime {:.2} ms (target restore {:.2} ms), {} rounds, {} bytes ({} MiB RAM, host {})",
            self.uri,
            ms(self.total_us),
            ms(self.downtime_us),
            ms(self.target_restore_us),
            self.rounds.len(),
            self.bytes,
            self.mem_bytes >> 20,
            self.host_kind
        )?;
        for (i, r) in self.rounds.iter().enumerate() {
            let kind = if i == 0 {
                "non-zero pages"
            } else if i + 1 == self.rounds.len() {
                "stop-and-copy"
            } else {
                "dirty pages"
            };
            writeln!(f, "  round {i}: {} pages, {} bytes, {:.2} ms ({kind})", r.pages, r.bytes, ms(r.us))?;
        }
        write!(f, "  {}: {}", if self.converged { "converged" } else { "did not converge" }, self.why_stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_bad_ones_are_named() {
        assert!(parse_line("snapshot /tmp/x").is_none());
        let (uri, o) =
            parse_line("migrate unix:/tmp/m.sock --downtime-ms 5 --max-rounds 3").unwrap().unwrap();
        assert_eq!(uri, Uri::Unix("/tmp/m.sock".into()));
        assert_eq!((o.downtime, o.max_rounds), (Duration::from_millis(5), 3));
        assert!(parse_line("migrate").unwrap().unwrap_err().to_string().contains("no address"));
        assert!(parse_line("migrate unix:/a --downtime-ms 0")
            .unwrap()
            .unwrap_err()
            .to_string()
            .contains("1 to"));
        assert!(parse_line("migrate unix:/a --max-rounds x").unwrap().is_err());
        assert!(parse_line("migrate unix:/a unix:/b")
            .unwrap()
            .unwrap_err()
            .to_string()
            .contains("unexpected"));
    }
}
