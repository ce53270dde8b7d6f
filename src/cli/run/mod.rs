//! `vmscope run`: boot a guest (or restore one, or receive one), let a debugger or nobody
//! drive it, and exit with its code.
//!
//! The tree: [`args`] holds the argument groups; one module per way a guest comes to be
//! ([`unikernel`] for the built-in unikernel and `--elf`, [`linux`], [`container`],
//! [`restore`] for `--restore`, [`incoming`] for `--incoming`); [`drive`] runs the guest
//! under gdb, a script session or nobody, with QMP beside it; [`report`] turns the end into
//! the report and vmscope's exit status. Modules here call down into the frontends
//! (`cli::session`, `cli::gdb`, `cli::qmp`), which never call back up.

pub mod args;
mod container;
mod drive;
mod incoming;
mod linux;
mod pvh;
pub mod report;
mod restore;
mod unikernel;

pub use args::{GuestKind, RunArgs};
use std::process::ExitCode;
use std::time::Instant;

/// The name the built-in unikernel goes by (in messages and in snapshots).
pub const UNIKERNEL_NAME: &str = "the built-in unikernel";

/// Runs `vmscope run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // Refused before anything boots: a bad --timeout, a gdb address open to the network.
    args.debug.time_limit()?;
    super::gdb::check_address(args.debug.gdb.as_ref(), args.debug.gdb_any_address)?;
    if let Some(file) = &args.restore {
        return restore::run(&args, file, started);
    }
    if let Some(uri) = &args.incoming {
        return incoming::run(&args, uri, started);
    }
    if !args.machine.disks.is_empty() && args.guest == Some(GuestKind::Container) {
        anyhow::bail!("--disk attaches a virtio-blk device to a VM; a container has none");
    }
    match args.guest {
        Some(GuestKind::Linux) => linux::run(&args, started),
        Some(GuestKind::Container) => container::run(&args.machine, &args.container, &args.report),
        Some(GuestKind::Unikernel) | None => unikernel::run(&args, started),
    }
}
