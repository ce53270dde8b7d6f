//! `vmscope run container`: the workload as a process in a real OCI container.

use super::run::RunArgs;
use anyhow::Context;
use std::process::ExitCode;

/// Runs `vmscope run container`.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let words: Vec<String> = args.workload.join(" ").split_whitespace().map(String::from).collect();
    let limit = i64::try_from(args.mem.saturating_mul(1 << 20)).unwrap_or(i64::MAX);
    let bundle =
        guests::container::prepare_bundle(&words, Some(limit)).context("cannot prepare the container")?;
    if args.verbose {
        eprintln!(
            "vmscope: host {}; container bundle {} run by {}, memory limit {} MiB",
            vmm::host_kind(),
            bundle.dir.display(),
            args.runtime,
            args.mem
        );
        eprintln!("vmscope: {}", guests::container::seccomp::report(&args.runtime));
        eprintln!("vmscope: {}", bundle.userns);
    }
    let run = guests::container::run(&bundle, &args.runtime)?;
    if args.verbose {
        eprintln!("vmscope: the container ran for {:.3} ms", run.elapsed.as_secs_f64() * 1e3);
        if !run.stderr.trim().is_empty() {
            eprintln!("{}", run.stderr.trim());
        }
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
                args.mem
            );
            ExitCode::from(137)
        }
        Some(c) => ExitCode::from((c & 0xff) as u8),
        None => {
            eprintln!("vmscope: the container was killed by a signal (a memory limit of {} MiB?)", args.mem);
            ExitCode::from(125)
        }
    })
}
