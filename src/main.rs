//! `vmscope`: boot guests under vmscope's own KVM VMM and look inside them.
#![forbid(unsafe_code)]

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// An interactive hypervisor and VM-introspection workbench.
#[derive(Parser, Debug)]
#[command(name = "vmscope", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Boot a guest and stream its console; exits with the guest's exit code.
    Run(Box<cli::run::RunArgs>),
    /// Show what kind of KVM host this is and what it offers.
    Host(cli::host::HostArgs),
    /// Check what each guest and feature needs from this host, and how to add what is missing.
    Doctor(cli::doctor::DoctorArgs),
    /// Run measurement suites (boot, exits) and write JSON + SVG.
    Measure(cli::measure::MeasureArgs),
    /// Build and list the provided guests.
    Guests(cli::guests::GuestsArgs),
    /// Explore running guests side by side in the terminal.
    Tui(cli::tui::TuiArgs),
    /// Guided labs: list, show, run a lab, and check your work.
    Lab(cli::lab::LabArgs),
    /// The embedded OCI runtime (libcontainer), run by vmscope itself in a fresh process.
    #[command(hide = true)]
    OciRuntime(cli::oci_runtime::OciRuntimeArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("VMSCOPE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cli::run::run(*args),
        Command::Host(args) => cli::host::run(args),
        Command::Doctor(args) => cli::doctor::run(args),
        Command::Measure(args) => cli::measure::run(args),
        Command::Guests(args) => cli::guests::run(args),
        Command::Tui(args) => cli::tui::run(args),
        Command::Lab(args) => cli::lab::run(args),
        Command::OciRuntime(args) => return cli::oci_runtime::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmscope: {}", cli::chain(&e));
            ExitCode::from(1)
        }
    }
}
