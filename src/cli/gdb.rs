//! `--gdb ADDR`: serve gdb for a running guest.

use anyhow::Context;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;
use vmm::machine::{Machine, Outcome};

/// vmscope's exit status when gdb killed the guest (as for SIGKILL).
pub const EXIT_KILLED: u8 = 137;

/// What `vmscope run`'s options say about gdb sessions, set once by [`configure`] before
/// the guest boots (so every guest kind that serves gdb sees the same limits).
#[derive(Clone, Copy, Debug, Default)]
struct Options {
    /// `--timeout`: it bounds gdb sessions too.
    limit: Option<Duration>,
    /// `--gdb-any-address`: a non-loopback address was confirmed.
    any_address: bool,
}

static OPTIONS: OnceLock<Options> = OnceLock::new();

/// Checks `--gdb`'s address before anything boots: a TCP address that is not loopback lets
/// anyone who reaches it read and write guest memory, so it needs `--gdb-any-address`
/// (and is then announced with a warning). Remembers `--timeout` for [`serve`].
pub fn configure(args: &super::run::RunArgs) -> anyhow::Result<()> {
    if let Some(addr) = args.gdb.as_ref().filter(|a| !a.is_local()) {
        anyhow::ensure!(
            args.gdb_any_address,
            "--gdb {addr} is not a loopback address: anyone who can reach it could read and write \
             the guest's memory; use 127.0.0.1 or unix:PATH, or add --gdb-any-address to confirm"
        );
    }
    let limit = args.timeout.and_then(|t| Duration::try_from_secs_f64(t).ok()).filter(|d| !d.is_zero());
    let _ = OPTIONS.set(Options { limit, any_address: args.gdb_any_address });
    Ok(())
}

/// Serves gdb until the guest ends or the time limit passes (`Some`) or gdb kills it
/// (`None`).
pub fn serve(
    machine: &Machine,
    addr: &gdb::ListenAddr,
    symbols: &inspect::symbols::SymbolTable,
    elf: Option<&Path>,
    held: bool,
) -> anyhow::Result<Option<Outcome>> {
    let options = OPTIONS.get().copied().unwrap_or_default();
    anyhow::ensure!(
        addr.is_local() || options.any_address,
        "--gdb {addr} is not a loopback address; add --gdb-any-address to confirm"
    );
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
    Ok(match gdb::serve(machine, &listener, symbols, held, options.limit)? {
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
