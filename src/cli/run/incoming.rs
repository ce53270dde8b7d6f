//! `vmscope run --incoming URI`: wait for one guest another vmscope migrates here, then run
//! it as a restored one (`restore::go_on`).

use super::args::RunArgs;
use super::restore;
use std::process::ExitCode;
use std::time::Instant;

/// Runs `vmscope run --incoming URI`.
pub fn run(args: &RunArgs, uri: &str, started: Instant) -> anyhow::Result<ExitCode> {
    let restored = crate::cli::migrate::receive(
        uri,
        args.incoming_any_address,
        restore::console(args),
        restore::options(args),
    )?;
    restore::go_on(args, restored, started)
}
