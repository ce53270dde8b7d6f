//! Who drives a booted guest until it ends: gdb (`--gdb`), a script session (`--break`,
//! `--script`) or nobody (the run waits, bounded by `--timeout`), with a QMP socket beside
//! any of them (`--qmp`). The same for every VM, however it came to be.

use super::args::DebugArgs;
use crate::cli::{gdb, qmp, session};
use inspect::symbols::SymbolTable;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use vmm::machine::{Machine, Outcome};

/// A running guest and what a debugger needs to know of it.
pub struct Driven<'a> {
    /// The guest.
    pub machine: &'a Machine,
    /// Its symbols, read only when a debugger attaches: a kernel's DWARF vmlinux is over
    /// 50 MiB.
    pub symbols: &'a dyn Fn() -> SymbolTable,
    /// The file with symbols that gdb is told to load (the built-in unikernel's when `None`).
    pub image: Option<&'a Path>,
    /// The symbols QMP's `human-monitor-command` uses.
    pub qmp_symbols: ::qmp::SymbolSource,
    /// How long a session's `cont` waits for a stop unless `--timeout` says otherwise.
    pub session_wait: Duration,
}

/// Runs the guest under whatever `args` asks for. `Ok(Err(status))` when the run ended
/// without the guest ending (a session's `quit`, gdb's `kill`).
pub fn drive(guest: Driven, args: &DebugArgs) -> anyhow::Result<Result<Outcome, ExitCode>> {
    let Driven { machine, symbols, image, qmp_symbols, session_wait } = guest;
    let limit = args.time_limit()?;
    qmp::around(machine, args.qmp.as_ref(), args.qmp_any_address, qmp_symbols, || {
        vmm::seccomp::install(vmm::seccomp::Thread::Main)?;
        if let Some(addr) = &args.gdb {
            let options = gdb::Options { limit, any_address: args.gdb_any_address, held: args.gdb_wait };
            return Ok(gdb::serve(machine, addr, &symbols(), image, options)?
                .ok_or(ExitCode::from(gdb::EXIT_KILLED)));
        }
        if args.debugging() {
            let script = args.script.as_deref();
            let wait = limit.unwrap_or(session_wait);
            let end = session::run(machine, &symbols(), &args.breaks, script, args.json, args.decoder, wait)?;
            return Ok(end.ok_or_else(session::quit_status));
        }
        Ok(Ok(qmp::wait(machine, limit)))
    })
}
