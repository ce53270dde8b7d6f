//! `vmscope run container`: the workload as a process in a real OCI container.

use super::args::{ContainerArgs, MachineArgs, ReportArgs};
use anyhow::Context;
use std::process::ExitCode;

/// Runs `vmscope run container`.
pub fn run(
    machine: &MachineArgs,
    container: &ContainerArgs,
    report: &ReportArgs,
) -> anyhow::Result<ExitCode> {
    let words: Vec<String> = machine.workload.join(" ").split_whitespace().map(String::from).collect();
    let limit = i64::try_from(machine.mem.saturating_mul(1 << 20)).unwrap_or(i64::MAX);
    let bundle =
        guests::container::prepare_bundle(&words, Some(limit)).context("cannot prepare the container")?;
    if report.verbose {
        eprintln!(
            "vmscope: host {}; container bundle {} run by {}, memory limit {} MiB",
            vmm::host_kind(),
            bundle.dir.display(),
            container.runtime,
            machine.mem
        );
        eprintln!("vmscope: {}", guests::container::seccomp::report(&container.runtime));
        eprintln!("vmscope: {}", bundle.userns);
    }
    let run = guests::container::run(&bundle, &container.runtime)?;
    if report.verbose {
        eprintln!("vmscope: the container ran for {:.3} ms", run.elapsed.as_secs_f64() * 1e3);
    }
    let failed = run.interrupted.is_none() && run.code != Some(0);
    // What the workload said on stderr is its reason: shown whenever it failed, not only
    // with -v.
    if (report.verbose || failed) && !run.stderr.trim().is_empty() {
        eprintln!("{}", tail(run.stderr.trim(), STDERR_LINES));
    }
    if let Some(signal) = run.interrupted {
        eprintln!(
            "vmscope: interrupted by signal {signal}: the container was killed, and its state, cgroups and bundle removed"
        );
        return Ok(ExitCode::from(128u8.saturating_add(u8::try_from(signal).unwrap_or(0))));
    }
    Ok(match run.code {
        Some(137) => {
            eprintln!(
                "vmscope: the container was killed (SIGKILL): most likely by the OOM killer, over its memory limit of {} MiB (an interrupt or a `kill` ends it the same way)",
                machine.mem
            );
            ExitCode::from(137)
        }
        Some(0) => ExitCode::SUCCESS,
        Some(c) => {
            let why = if run.stderr.trim().is_empty() { " (it wrote nothing to stderr)" } else { "" };
            eprintln!("vmscope: the workload in the container exited with status {c}{why}");
            ExitCode::from((c & 0xff) as u8)
        }
        None => {
            eprintln!(
                "vmscope: the container was killed by a signal (a memory limit of {} MiB?)",
                machine.mem
            );
            ExitCode::from(125)
        }
    })
}

/// Lines of the workload's stderr shown when it fails (its last ones).
const STDERR_LINES: usize = 20;

/// The last `n` lines of `text`, with a note of how many were left out.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    let shown = lines[skip..].join("\n");
    if skip == 0 {
        shown
    } else {
        format!("[{skip} earlier lines of the workload's stderr left out]\n{shown}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_keeps_the_last_lines_and_says_how_many_were_cut() {
        assert_eq!(super::tail("a\nb", 5), "a\nb");
        assert_eq!(super::tail("a\nb\nc", 2), "[1 earlier lines of the workload's stderr left out]\nb\nc");
    }
}
