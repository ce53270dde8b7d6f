//! `--gdb ADDR`: serve gdb for a running guest.

use anyhow::Context;
use std::path::Path;
use vmm::machine::{Machine, Outcome};

/// vmscope's exit status when gdb killed the guest (as for SIGKILL).
pub const EXIT_KILLED: u8 = 137;

/// Serves gdb until the guest ends (`Some`) or gdb kills it (`None`).
pub fn serve(
    machine: &Machine,
    addr: &gdb::ListenAddr,
    symbols: &inspect::symbols::SymbolTable,
    elf: Option<&Path>,
    held: bool,
) -> anyhow::Result<Option<Outcome>> {
    let listener = gdb::Listener::bind(addr).with_context(|| format!("cannot listen for gdb on {addr}"))?;
    let image = match elf {
        Some(p) => p.display().to_string(),
        None => super::guests::unikernel_path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "GUEST.elf".into()),
    };
    eprintln!("vmscope: gdb can attach: gdb {image} -ex 'target remote {}'", listener.gdb_target());
    Ok(match gdb::serve(machine, &listener, symbols, held)? {
        gdb::ServeEnd::Guest(outcome) => Some(outcome),
        gdb::ServeEnd::Killed => {
            eprintln!("vmscope: gdb killed the guest");
            None
        }
    })
}
