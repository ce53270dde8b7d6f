//! `vmscope run linux`: boot the minimal Linux (built and cached on first use), or a kernel
//! of the user's choosing, with the PVM profile applied automatically on PVM hosts.

use super::run::{finish, RunArgs};
use anyhow::Context;
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmm::arch::x86_64::Ring;
use vmm::devices::console::Console;
use vmm::machine::{LinuxGuestConfig, Machine};
use vmm::vstate::vcpu::EmulationFixups;

/// Runs `vmscope run linux`.
pub fn run(args: &RunArgs, process_start: Instant) -> anyhow::Result<ExitCode> {
    let host = vmm::host_kind();
    let pvm = host == inspect::HostKind::Pvm;
    let session = !args.breaks.is_empty() || args.script.is_some();
    // The image with symbols (for the gdb stub's monitor commands and the hint it prints).
    let mut debug_image = args.kernel.clone();
    let (kernel_name, kernel): (String, Arc<[u8]>) = match &args.kernel {
        Some(p) => (
            p.display().to_string(),
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?.into(),
        ),
        None => {
            let opts = guests::linux::BuildOptions {
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                ..Default::default()
            };
            let a = guests::linux::ensure_built(&opts).context("cannot build the Linux guest")?;
            debug_image = Some(a.vmlinux.clone());
            let bytes = std::fs::read(&a.vmlinux_stripped)
                .with_context(|| format!("cannot read {}", a.vmlinux_stripped.display()))?;
            (a.vmlinux_stripped.display().to_string(), bytes.into())
        }
    };
    let (initrd_name, initrd): (String, Arc<[u8]>) = match &args.initrd {
        Some(p) => (
            p.display().to_string(),
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?.into(),
        ),
        None => {
            let archive = guests::linux::initramfs::build(
                std::path::Path::new(guests::linux::initramfs::BUSYBOX),
                guests::workload::ELF,
            )?;
            ("vmscope's initramfs".to_string(), archive.into())
        }
    };
    // The kernel command line splits at spaces: words are joined with ',' (and ';' separates
    // workloads), which /init turns back into spaces.
    let mut extra = vec![format!("vmscope.workload={}", args.workload.join(" ").replace(' ', ","))];
    if args.shell {
        extra.push("vmscope.shell=1".into());
    }
    if let Some(a) = &args.append {
        extra.extend(a.split_whitespace().map(String::from));
    }
    let cmdline = guests::linux::profile::cmdline(pvm, &extra);
    let cfg = LinuxGuestConfig {
        kernel_name: kernel_name.clone(),
        kernel,
        initrd: Some((initrd_name, initrd)),
        cmdline: cmdline.clone(),
        mem_mib: args.mem.max(128),
        vcpus: args.vcpus,
        // A debug session starts with the vCPUs held, as for the unikernel.
        start_paused: args.gdb_wait || (session && args.gdb.is_none()),
        // On PVM the kernel's own int3 (its self-test, text patching) and fwait reach the
        // VMM as emulation failures; answer them as the CPU would.
        fixups: EmulationFixups { int3_to_bp: pvm, skip_fwait: pvm },
        disks: args.disks.clone(),
        boot: args.boot.into(),
    };
    if pvm && vmm::boot::linux::is_bzimage(&cfg.kernel) {
        eprintln!(
            "vmscope: {kernel_name} is a bzImage: it decompresses itself before it starts, and on this PVM host that runs in KVM's instruction emulator and takes minutes; boot the vmlinux to skip it"
        );
    }
    if args.verbose {
        eprintln!(
            "vmscope: host {host} ({}); kernel {kernel_name}; command line: {cmdline}",
            host.describe()
        );
        if pvm {
            eprintln!("vmscope: PVM profile applied: the kernel runs in KVM's instruction emulator, so booting takes minutes (see guests/linux/README.md)");
        }
    }
    let console = if args.json { Console::writer(std::io::stderr()) } else { Console::stdout() };
    let machine =
        Machine::boot_linux(&cfg, console.clone()).with_context(|| format!("cannot boot {kernel_name}"))?;
    if args.verbose {
        if let vmm::machine::GuestLayout::Linux(l) = machine.layout() {
            let protocol = match l.protocol {
                vmm::boot::linux::BootProtocol::Pvh => "the PVH entry",
                vmm::boot::linux::BootProtocol::Linux64 => "the 64-bit boot protocol",
            };
            let initrd = match &l.initrd {
                Some(m) => format!("initramfs at {:#x}, {} bytes", m.paddr, m.size),
                None => "no initramfs".into(),
            };
            eprintln!(
                "vmscope: entered through {protocol} at {:#x}{}; {initrd}",
                l.entry,
                if l.bzimage { " (bzImage: decompresses itself first)" } else { "" },
            );
        }
    }
    // On a terminal, the guest's tty is the only line discipline (restored at the end).
    let raw_tty = if args.shell { tui::rawtty::RawTty::enable() } else { None };
    if args.shell {
        forward_stdin(&machine);
    }
    // ps, dmesg, uname in sessions and gdb's monitor read the guest with this vmlinux's DWARF.
    if let Some(p) = &debug_image {
        inspect::linux::commands::set_vmlinux(p);
    }
    // The kernel's symbols, for gdb's monitor commands and for sessions (read only then:
    // the DWARF vmlinux is over 50 MiB).
    let symbols = || {
        debug_image
            .as_deref()
            .and_then(|p| inspect::symbols::SymbolTable::from_elf_file(p).ok())
            .unwrap_or_default()
    };
    let qmp_symbols = debug_image.clone().map_or(qmp::SymbolSource::None, qmp::SymbolSource::File);
    let outcome = super::qmp::around(&machine, args.qmp.as_ref(), args.qmp_any_address, qmp_symbols, || {
        vmm::seccomp::install(vmm::seccomp::Thread::Main)?;
        Ok(Ok(match &args.gdb {
            Some(addr) => {
                let symbols = symbols();
                match super::gdb::serve(&machine, addr, &symbols, debug_image.as_deref(), args.gdb_wait)? {
                    Some(outcome) => outcome,
                    None => return Ok(Err(ExitCode::from(super::gdb::EXIT_KILLED))),
                }
            }
            None if session => {
                let symbols = symbols();
                // Booting to a breakpoint in emulated kernel code takes minutes on PVM.
                let wait = Duration::from_secs(if pvm { 900 } else { 120 });
                match super::session::run_for(&machine, &symbols, args, wait)? {
                    Ok(outcome) => outcome,
                    Err(status) => return Ok(Err(status)),
                }
            }
            None => super::qmp::wait(&machine, args.timeout),
        }))
    })?;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(status) => return Ok(status),
    };
    drop(raw_tty);
    let tail = String::from_utf8_lossy(&console.tail()).into_owned();
    let panic_text = panic_excerpt(&tail);
    let hint = pvm.then_some("on PVM the guest kernel runs in KVM's instruction emulator; an instruction it cannot run ends the guest (see guests/linux/README.md)");
    finish(args, &machine, outcome, process_start, Ring::Ring0, hint, panic_text.as_deref())
}

/// How many characters of console text before "Kernel panic" the report quotes.
const PANIC_CONTEXT_CHARS: usize = 2000;

/// The guest's panic message with up to [`PANIC_CONTEXT_CHARS`] characters before it, or
/// `None` when the console shows no panic. The text is the guest's, so it is cut by
/// character, never at a byte offset that could fall inside one.
fn panic_excerpt(tail: &str) -> Option<String> {
    let at = tail.find("Kernel panic")?;
    let before = &tail[..at];
    let start = before.char_indices().rev().nth(PANIC_CONTEXT_CHARS - 1).map_or(0, |(i, _)| i);
    Some(tail[start..].to_string())
}

/// Feeds this process's standard input to the guest's serial port.
pub(super) fn forward_stdin(machine: &Machine) {
    let serial = machine.serial_input();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
            // What the user typed is never dropped: wait as long as the guest takes.
            serial.send_all(&buf[..n], Duration::MAX);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panic_excerpt_is_cut_by_character() {
        assert_eq!(panic_excerpt("all well\n"), None);
        assert_eq!(
            panic_excerpt("Kernel panic - not syncing").as_deref(),
            Some("Kernel panic - not syncing")
        );
        // Multibyte characters everywhere around the cut: 2001 bytes before the panic is
        // where a byte offset of 2000 would land, inside a 2-, 3- or 4-byte character.
        for ch in ['é', '€', '🦀'] {
            for pad in 0..4 {
                let text: String = "x".repeat(pad) + &ch.to_string().repeat(2500);
                let tail = format!("{text}Kernel panic - not syncing: {ch}\n");
                let e = panic_excerpt(&tail).unwrap();
                let context = e.split("Kernel panic").next().unwrap();
                assert_eq!(context.chars().count(), PANIC_CONTEXT_CHARS, "{ch} {pad}");
                assert!(e.ends_with(&format!("not syncing: {ch}\n")));
            }
        }
        // Less context than the limit: all of it.
        assert_eq!(panic_excerpt("ü\nKernel panic").as_deref(), Some("ü\nKernel panic"));
    }
}
