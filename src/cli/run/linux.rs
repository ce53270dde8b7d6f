//! `vmscope run linux`: the Linux preset (`cli::linux`) with the workload or a shell on the
//! console, this process's standard input forwarded to it.

use super::args::RunArgs;
use super::drive::{drive, Driven};
use super::report;
use anyhow::Context;
use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vmm::arch::x86_64::Ring;
use vmm::devices::console::Console;
use vmm::machine::Machine;

/// What a guest that dies on a PVM host most likely met.
const PVM_HINT: &str = "on PVM the guest kernel runs in KVM's instruction emulator; an instruction it cannot run ends the guest (see guests/linux/README.md)";

/// Runs `vmscope run linux`.
pub fn run(args: &RunArgs, started: Instant) -> anyhow::Result<ExitCode> {
    let (machine_args, linux, debug) = (&args.machine, &args.linux, &args.debug);
    let preset = crate::cli::linux::prepare(crate::cli::linux::Choice {
        kernel: linux.kernel.as_deref(),
        initrd: linux.initrd.as_deref(),
        cmdline: cmdline_words(&machine_args.workload, linux.shell, linux.append.as_deref()),
        boot: linux.boot.into(),
        mem_mib: machine_args.mem,
        vcpus: machine_args.vcpus,
        disks: machine_args.disks.clone(),
        // A debug session starts with the vCPUs held, as for the unikernel.
        start_paused: debug.start_paused(),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    })?;
    boot_and_drive(args, &preset, started)
}

/// Boots `preset` and runs it to its end under the debug frontends `args` asks for, with
/// the console on this process's standard output (COM1). `run --elf` of a PVH guest ends
/// here too.
pub fn boot_and_drive(
    args: &RunArgs,
    preset: &crate::cli::linux::Preset,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let (linux, debug, verbose) = (&args.linux, &args.debug, args.report.verbose);
    let cfg = &preset.config;
    if verbose {
        let host = vmm::host_kind();
        eprintln!(
            "vmscope: host {host} ({}); kernel {}; command line: {}",
            host.describe(),
            cfg.kernel_name,
            cfg.cmdline
        );
        if preset.pvm {
            eprintln!("vmscope: PVM profile applied: the guest's CPL0 code runs in KVM's instruction emulator, so a Linux kernel takes minutes to boot (see guests/linux/README.md)");
        }
    }
    let console = if debug.json { Console::writer(std::io::stderr()) } else { Console::stdout() };
    let machine = Machine::boot_linux(cfg, console.clone())
        .with_context(|| format!("cannot boot {}", cfg.kernel_name))?;
    if verbose {
        print_layout(&machine);
    }
    // On a terminal, the guest's tty is the only line discipline (restored at the end).
    let raw_tty = if linux.shell { tui::rawtty::RawTty::enable() } else { None };
    if linux.shell {
        forward_stdin(&machine);
    }
    // ps, dmesg, uname in sessions and gdb's monitor read the guest with this vmlinux's DWARF.
    if let Some(p) = &preset.debug_image {
        inspect::linux::commands::set_vmlinux(p);
    }
    let symbols = || {
        preset
            .debug_image
            .as_deref()
            .and_then(|p| inspect::symbols::SymbolTable::from_elf_file(p).ok())
            .unwrap_or_default()
    };
    let guest = Driven {
        machine: &machine,
        symbols: &symbols,
        image: preset.debug_image.as_deref(),
        qmp_symbols: preset.debug_image.clone().map_or(::qmp::SymbolSource::None, ::qmp::SymbolSource::File),
        // Booting to a breakpoint in emulated kernel code takes minutes on PVM.
        session_wait: Duration::from_secs(if preset.pvm { 900 } else { 120 }),
    };
    let outcome = match drive(guest, debug)? {
        Ok(outcome) => outcome,
        Err(status) => return Ok(status),
    };
    drop(raw_tty);
    let tail = String::from_utf8_lossy(&console.tail()).into_owned();
    let panic_text = panic_excerpt(&tail);
    let hint = preset.pvm.then_some(PVM_HINT);
    report::finish(&args.report, &machine, outcome, started, Ring::Ring0, hint, panic_text.as_deref())
}

/// The kernel command-line words `run linux` adds: the workload (its words joined with ',',
/// workloads separated by ';', which /init turns back into spaces: the command line splits
/// at spaces), the shell, and `--append`.
fn cmdline_words(workload: &[String], shell: bool, append: Option<&str>) -> Vec<String> {
    let mut words = vec![format!("vmscope.workload={}", workload.join(" ").replace(' ', ","))];
    if shell {
        words.push("vmscope.shell=1".into());
    }
    words.extend(append.into_iter().flat_map(str::split_whitespace).map(String::from));
    words
}

/// `--verbose`: how the kernel was entered and where its initramfs lies.
fn print_layout(machine: &Machine) {
    let vmm::machine::GuestLayout::Linux(l) = machine.layout() else { return };
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
pub fn forward_stdin(machine: &Machine) {
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
    fn the_workload_shell_and_append_become_command_line_words() {
        let workload = ["hello".to_string(), "compute 5".to_string()];
        assert_eq!(
            cmdline_words(&workload, true, Some(" quiet  loglevel=3 ")),
            ["vmscope.workload=hello,compute,5", "vmscope.shell=1", "quiet", "loglevel=3"]
        );
        assert_eq!(cmdline_words(&workload[..1], false, None), ["vmscope.workload=hello"]);
    }

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
