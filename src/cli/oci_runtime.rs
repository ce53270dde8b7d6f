//! `vmscope oci-runtime run --bundle DIR ID` (hidden): the embedded OCI runtime.
//!
//! `vmscope run container --runtime embedded` and the TUI re-execute vmscope with this
//! subcommand rather than fork from their own, possibly multi-threaded, process: see
//! `guests::container::embedded`. Its command line mirrors `runc run` so that both
//! runtimes are started, piped and waited for the same way.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `vmscope oci-runtime`.
#[derive(Args, Debug)]
pub struct OciRuntimeArgs {
    #[command(subcommand)]
    command: OciCommand,
}

#[derive(Subcommand, Debug)]
enum OciCommand {
    /// Create, start and wait for a container; exit with its workload's status.
    Run {
        /// The OCI bundle (config.json and the root file system).
        #[arg(long)]
        bundle: PathBuf,
        /// The container id.
        id: String,
    },
}

/// Runs `vmscope oci-runtime`.
pub fn run(args: OciRuntimeArgs) -> ExitCode {
    match args.command {
        OciCommand::Run { bundle, id } => match guests::container::embedded::run_here(&bundle, &id) {
            Ok(code) => ExitCode::from((code & 0xff) as u8),
            Err(e) => {
                eprintln!(
                    "{}: {}",
                    guests::container::embedded::FAILED,
                    super::chain(&anyhow::Error::new(e))
                );
                ExitCode::from(1)
            }
        },
    }
}
