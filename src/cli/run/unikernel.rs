//! The built-in unikernel, or an ELF of the user's (`--elf`) that follows its entry
//! contract (a PVH ELF without vmscope's note goes to [`super::pvh`]).

use super::args::RunArgs;
use super::drive::{drive, Driven};
use super::{report, UNIKERNEL_NAME};
use anyhow::Context;
use std::process::ExitCode;
use std::time::Instant;
use vmm::arch::x86_64::Ring;
use vmm::devices::console::Console;
use vmm::machine::{ElfGuestConfig, ElfImage, Machine};

/// What a PVM host's CPL0 emulation failure most likely means.
const PVM_CPL0_HINT: &str = "this host is PVM, where CPL0 guest code runs in KVM's instruction emulator; some instructions (SSE, int3, …) are not emulated. Try --ring 3.";

/// Runs `vmscope run [unikernel] | --elf FILE`.
pub fn run(args: &RunArgs, started: Instant) -> anyhow::Result<ExitCode> {
    let host = vmm::host_kind();
    let debug = &args.debug;
    let ring = match args.machine.ring {
        Some(r) => r,
        // Single-stepping and int3 need CPL0 on PVM (CPL3 debug exceptions go to the guest).
        None if debug.debugging() => Ring::Ring0,
        None if host.native_ring() == 0 => Ring::Ring0,
        None => Ring::Ring3,
    };
    if ring == Ring::Ring3 && host == inspect::HostKind::Pvm && !debug.breaks.is_empty() {
        anyhow::bail!(
            "--break needs --ring 0 on this PVM host: PVM delivers a CPL3 int3 to the guest, not to vmscope"
        );
    }
    let (name, elf): (String, ElfImage) = match &args.elf {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            if vmm::loader::entry_kind(&bytes) == vmm::loader::ElfEntry::Pvh {
                return super::pvh::run(args, path, bytes, started);
            }
            (path.display().to_string(), bytes.into())
        }
        // Borrowed from the binary, not copied: only the segments the boot loads are read.
        None => (UNIKERNEL_NAME.into(), guests::unikernel::ELF.into()),
    };
    let workload = &args.machine.workload;
    let cfg = ElfGuestConfig {
        name: name.clone(),
        elf,
        cmdline: workload.join(" "),
        mem_mib: args.machine.mem,
        vcpus: args.machine.vcpus,
        ring,
        start_paused: debug.start_paused(),
        // The unikernel rings the doorbell only in some workloads; an ELF of the user's may
        // ring it at any time.
        doorbell: args.elf.is_some() || guests::unikernel::rings_doorbell(workload),
        ring_consumer: args.machine.ring_consumer.into(),
    };
    if args.report.verbose {
        eprintln!(
            "vmscope: host {host} ({}); guest {name} at CPL{}, {} MiB, {} vCPU(s), command line {:?}",
            host.describe(),
            ring.cpl(),
            cfg.mem_mib,
            cfg.vcpus,
            cfg.cmdline
        );
    }
    let console = if debug.json { Console::writer(std::io::stderr()) } else { Console::stdout() };
    let machine = Machine::boot_elf_with_disks(&cfg, &args.machine.disks, console)
        .with_context(|| format!("cannot boot {name}"))?;
    let symbols = || inspect::symbols::SymbolTable::from_elf(&cfg.name, &cfg.elf).unwrap_or_default();
    let guest = Driven {
        machine: &machine,
        symbols: &symbols,
        image: args.elf.as_deref(),
        // QMP keeps its own copy of a built-in image, so it is made only when QMP is there.
        qmp_symbols: match &args.debug.qmp {
            Some(_) => ::qmp::SymbolSource::Elf(cfg.name.clone(), cfg.elf.to_arc()),
            None => ::qmp::SymbolSource::None,
        },
        session_wait: crate::cli::session::STOP_TIMEOUT,
    };
    let outcome = match drive(guest, debug)? {
        Ok(outcome) => outcome,
        Err(status) => return Ok(status),
    };
    let hint = (host == inspect::HostKind::Pvm && ring == Ring::Ring0).then_some(PVM_CPL0_HINT);
    report::finish(&args.report, &machine, outcome, started, ring, hint, None)
}
