//! `--gdb ADDR`: serve gdb for a running guest.

use anyhow::Context;
use std::path::Path;
use std::time::Duration;
use vmm::machine::{Machine, Outcome};

/// vmscope's exit status when gdb killed the guest (as for SIGKILL).
pub const EXIT_KILLED: u8 = 137;

/// What `vmscope run`'s options say about a gdb session.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `--timeout`: it bounds gdb sessions too.
    pub limit: Option<Duration>,
    /// `--gdb-any-address`: a non-loopback address was confirmed.
    pub any_address: bool,
    /// `--gdb-wait`: the vCPUs are held before the first instruction until gdb continues.
    pub held: bool,
}

/// Checks `--gdb`'s address before anything boots: a TCP address that is not loopback lets
/// anyone who reaches it read and write guest memory, so it needs `--gdb-any-address`
/// (and is then announced with a warning).
pub fn check_address(addr: Option<&gdb::ListenAddr>, any_address: bool) -> anyhow::Result<()> {
    if let Some(addr) = addr.filter(|a| !a.is_local()) {
        anyhow::ensure!(
            any_address,
            "--gdb {addr} is not a loopback address: anyone who can reach it could read and write \
             the guest's memory; use 127.0.0.1 or unix:PATH, or add --gdb-any-address to confirm"
        );
    }
    Ok(())
}

/// Serves gdb until the guest ends or the time limit passes (`Some`) or gdb kills it
/// (`None`).
pub fn serve(
    machine: &Machine,
    addr: &gdb::ListenAddr,
    symbols: &inspect::symbols::SymbolTable,
    elf: Option<&Path>,
    options: Options,
) -> anyhow::Result<Option<Outcome>> {
    check_address(Some(addr), options.any_address)?;
    let listener = gdb::Listener::bind(addr).with_context(|| format!("cannot listen for gdb on {addr}"))?;
    if !addr.is_local() {
        eprintln!(
            "vmscope: warning: gdb listens on {}, which is not loopback: anyone who can reach it can read and write the guest's memory",
            listener.local_addr()
        );
    }
    let image = match elf {
        Some(p) => p.display().to_string(),
        None => super::guests::unikernel_path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "GUEST.elf".into()),
    };
    // The kernel's gdb helpers (lx-ps, lx-dmesg, ...) beside a vmlinux load themselves once
    // their directory is an auto-load safe path.
    let helpers = elf
        .and_then(|p| p.parent().filter(|d| d.join("vmlinux-gdb.py").exists()))
        .map(|d| format!(" -iex 'add-auto-load-safe-path {}'", d.display()))
        .unwrap_or_default();
    eprintln!("vmscope: gdb can attach: gdb{helpers} {image} -ex 'target remote {}'", listener.gdb_target());
    Ok(match gdb::serve(machine, &listener, symbols, options.held, options.limit)? {
        gdb::ServeEnd::Guest(outcome) => Some(outcome),
        gdb::ServeEnd::Killed => {
            eprintln!("vmscope: gdb killed the guest");
            None
        }
        gdb::ServeEnd::TimedOut { limit } => {
            Some(Outcome::TimedOut { limit, snapshot: machine.snapshot(0).ok().map(Box::new) })
        }
    })
}
