//! `vmscope run --restore FILE`: the guest in a snapshot goes on in this process, with
//! `--script`/`--break`/`--gdb`/`--qmp` as for a booted guest. [`go_on`] is also where a
//! guest received by `--incoming` continues.

use super::args::RunArgs;
use super::drive::{drive, Driven};
use super::{report, UNIKERNEL_NAME};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use vmm::arch::x86_64::Ring;
use vmm::devices::console::Console;
use vmm::machine::GuestLayout;
use vmm::snapshot::meta::GuestMeta;
use vmm::snapshot::{RestoreOptions, Restored};

/// Runs `vmscope run --restore FILE`.
pub fn run(args: &RunArgs, file: &Path, started: Instant) -> anyhow::Result<ExitCode> {
    let restored = vmm::snapshot::restore(file, options(args), console(args))
        .with_context(|| format!("cannot restore {}", file.display()))?;
    let running_at = started.elapsed();
    if args.report.verbose {
        for msr in &restored.msrs_not_taken {
            eprintln!("vmscope: not restored: {msr}");
        }
        eprintln!(
            "vmscope: restored {} ({} MiB, {} KiB not zero, taken on {}) in {:.3} ms; process start to guest running: {:.3} ms",
            file.display(),
            restored.meta.mem_bytes >> 20,
            restored.meta.nonzero_bytes >> 10,
            restored.meta.host_kind,
            restored.elapsed.as_secs_f64() * 1e3,
            running_at.as_secs_f64() * 1e3
        );
    }
    go_on(args, restored, started)
}

/// How a restored guest starts: held for a script session or `--gdb-wait`; its
/// breakpoints kept when a debugger will see them.
pub fn options(args: &RunArgs) -> RestoreOptions {
    RestoreOptions { start_paused: args.debug.start_paused(), keep_breakpoints: args.debug.debugging() }
}

/// Where the guest's console goes: stdout, or stderr when `--json` answers take stdout.
pub fn console(args: &RunArgs) -> Console {
    if args.debug.json {
        Console::writer(std::io::stderr())
    } else {
        Console::stdout()
    }
}

/// Runs a restored (or received) guest to its end, as a booted one would run.
pub fn go_on(args: &RunArgs, restored: Restored, started: Instant) -> anyhow::Result<ExitCode> {
    for note in &restored.notes {
        eprintln!("vmscope: {note}");
    }
    let machine = &restored.machine;
    let ring = match machine.layout() {
        GuestLayout::Elf(l) => l.entry.ring,
        // A Linux guest runs its kernel at CPL0.
        _ => Ring::Ring0,
    };
    let shell = match &restored.meta.guest {
        GuestMeta::Elf { .. } => None,
        GuestMeta::Linux { cmdline, .. } => Some(cmdline.split_whitespace().any(|w| w == "vmscope.shell=1")),
    };
    // A Linux guest's console reads this process's standard input, as under `run linux`
    // (unless a session reads its commands from there); its shell gets a raw terminal.
    let raw_tty = match shell {
        Some(shell) if !args.debug.session_reads_stdin() => {
            super::linux::forward_stdin(machine);
            shell.then(tui::rawtty::RawTty::enable).flatten()
        }
        _ => None,
    };
    let name = &restored.meta.guest_name;
    let debug_image = debug_image_of(name);
    if shell.is_some() {
        // ps, dmesg, uname in sessions read the guest with the kernel's DWARF.
        inspect::linux::commands::set_vmlinux(&debug_image);
    }
    let symbols = || symbols_of(name, &debug_image);
    let is_unikernel = name == UNIKERNEL_NAME;
    let guest = Driven {
        machine,
        symbols: &symbols,
        image: (!is_unikernel).then_some(debug_image.as_path()),
        qmp_symbols: if is_unikernel {
            ::qmp::SymbolSource::Elf(name.clone(), guests::unikernel::ELF.into())
        } else {
            ::qmp::SymbolSource::File(debug_image.clone())
        },
        session_wait: crate::cli::session::STOP_TIMEOUT,
    };
    let outcome = match drive(guest, &args.debug)? {
        Ok(outcome) => outcome,
        Err(status) => return Ok(status),
    };
    drop(raw_tty);
    report::finish(&args.report, machine, outcome, started, ring, None, None)
}

/// The guest's symbols: the built-in unikernel's, or those of the ELF with debug
/// information that goes with the guest file `name`.
fn symbols_of(name: &str, debug_image: &Path) -> inspect::symbols::SymbolTable {
    if name == UNIKERNEL_NAME {
        return inspect::symbols::SymbolTable::from_elf(name, guests::unikernel::ELF).unwrap_or_default();
    }
    inspect::symbols::SymbolTable::from_elf_file(debug_image).unwrap_or_default()
}

/// The image with symbols for the guest file `name`: the kernel vmscope builds boots
/// `vmlinux.stripped`, whose symbols are in the `vmlinux` beside it.
fn debug_image_of(name: &str) -> PathBuf {
    let path = Path::new(name);
    if path.file_name().is_some_and(|f| f == "vmlinux.stripped") {
        let full = path.with_file_name("vmlinux");
        if full.exists() {
            return full;
        }
    }
    path.to_path_buf()
}
