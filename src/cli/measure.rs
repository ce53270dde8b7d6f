//! `vmscope measure SUITE…`: scripted measurements with JSON, a table and an SVG each.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `vmscope measure`.
#[derive(Args, Debug)]
pub struct MeasureArgs {
    /// Suites to run (boot, exits, compute, io-batching, memory, surface, anchors, density).
    #[arg(required_unless_present = "compare")]
    suites: Vec<String>,
    /// Runs per configuration (default: per suite).
    #[arg(long)]
    runs: Option<usize>,
    /// A reduced run (CI).
    #[arg(long)]
    quick: bool,
    /// Leave out the Linux guest's rows even when its kernel is cached (each boot takes
    /// about a minute on PVM).
    #[arg(long)]
    no_linux: bool,
    /// anchors: the Firecracker binary (default: `firecracker` on PATH).
    #[arg(long)]
    firecracker: Option<PathBuf>,
    /// anchors: the Cloud Hypervisor binary (default: `cloud-hypervisor` on PATH).
    #[arg(long)]
    cloud_hypervisor: Option<PathBuf>,
    /// Where to write SUITE.json and SUITE.svg.
    #[arg(long, default_value = "vmscope-measure")]
    out: PathBuf,
    /// Show two earlier reports side by side instead of measuring.
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"])]
    compare: Option<Vec<PathBuf>>,
}

/// Runs `vmscope measure`.
pub fn run(args: MeasureArgs) -> anyhow::Result<ExitCode> {
    if let Some(files) = &args.compare {
        let load = |p: &PathBuf| -> anyhow::Result<labs::measure::Report> {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a vmscope measure report", p.display()))
        };
        print!("{}", labs::measure::Report::compare(&load(&files[0])?, &load(&files[1])?));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(bad) = args.suites.iter().find(|s| !labs::measure::SUITES.contains(&s.as_str())) {
        return Err(labs::measure::MeasureError::UnknownSuite(bad.clone()).into());
    }
    anyhow::ensure!(args.runs != Some(0), "--runs must be at least 1");
    let opts = labs::measure::Options {
        bin: std::env::current_exe().context("cannot find the vmscope binary")?,
        runs: args.runs,
        quick: args.quick,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        linux: !args.no_linux,
        firecracker: args.firecracker.clone(),
        cloud_hypervisor: args.cloud_hypervisor.clone(),
    };
    for suite in &args.suites {
        let report = labs::measure::run_suite(suite, &opts)?;
        print!("{}", report.table());
        let (json, svg) = report.write(&args.out)?;
        println!("wrote {} and {}\n", json.display(), svg.display());
    }
    Ok(ExitCode::SUCCESS)
}
