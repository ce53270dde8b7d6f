//! Live migration from the command line: `migrate URI …` in a session (the source) and
//! `vmscope run --incoming URI` (the target). The work is `vmm::migration`; this module
//! shows progress, prints the summaries and ends the source once the guest has moved.

use anyhow::Context;
use debugger::Output;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vmm::arch::x86_64::Ring;
use vmm::devices::console::Console;
use vmm::machine::{GuestLayout, Machine};
use vmm::migration::{command, Progress, Uri};
use vmm::snapshot::meta::GuestMeta;
use vmm::snapshot::RestoreOptions;

/// How long the target waits for each frame once a source has connected.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a session line if it is `migrate …`: the guest runs during the pre-copy rounds
/// (a stopped one is resumed, as the target will run it), a progress bar on a terminal.
/// On success the output is the summary and the caller ends the process with
/// [`end_source`]; on failure the guest runs on here and the error says why.
pub fn session_line(machine: &Machine, line: &str) -> Option<anyhow::Result<Output>> {
    let parsed = command::parse_line(line)?;
    Some((|| {
        let (uri, opts) = parsed?;
        machine.resume_all()?;
        let bar = progress_bar();
        let mut report = |p: &Progress| {
            if let Some(b) = &bar {
                b.set_length(p.pages_in_round);
                b.set_position(p.pages_in_round - p.pages_left);
                let what = if p.stopped { "stop-and-copy" } else { "pre-copy" };
                b.set_message(format!("round {} ({what}), {} MiB sent", p.round, p.bytes >> 20));
            }
        };
        let r = vmm::migration::migrate(machine, &uri, &opts, &mut report);
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let done =
            r.map_err(|e| anyhow::Error::new(e).context("migration failed; the guest runs on here"))?;
        let json = serde_json::to_value(&done.summary)?;
        let text = format!("{}\n", done.summary);
        // The vCPUs stay held (`done` keeps them) until the process ends.
        std::mem::forget(done);
        Ok(Output { text, json, ended: None })
    })())
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template("migrate {bar:30} {pos}/{len} pages  {msg}").ok()?;
    bar.set_style(style);
    Some(bar)
}

/// Ends the source after a migration: the guest runs on the target now.
pub fn end_source() -> ! {
    command::end_source()
}

/// Runs `vmscope run --incoming URI`: waits for one guest, runs it here (with `--script`,
/// `--break`, `--gdb`, `--timeout` as for a restored one) and ends with it.
pub fn run_incoming(args: &super::run::RunArgs, uri: &str) -> anyhow::Result<ExitCode> {
    let process_start = Instant::now();
    super::gdb::configure(args)?;
    let debugging = !args.breaks.is_empty() || args.script.is_some() || args.gdb.is_some();
    if let Some(t) = args.timeout {
        anyhow::ensure!(t.is_finite() && t > 0.0, "--timeout must be a positive number of seconds, not {t}");
    }
    let uri: Uri = uri.parse()?;
    let listener = uri.listen(args.incoming_any_address)?;
    eprintln!("vmscope: waiting for a guest at {}", listener.uri());
    let console = if args.json { Console::writer(std::io::stderr()) } else { Console::stdout() };
    let opts = RestoreOptions {
        start_paused: (debugging && args.gdb.is_none()) || args.gdb_wait,
        keep_breakpoints: debugging,
    };
    let at = listener.uri();
    let stream = vmm::migration::accept(&listener)?;
    drop(listener);
    eprintln!("vmscope: a source connected; receiving its guest");
    let received = vmm::migration::receive(stream, &at, console, opts, FRAME_TIMEOUT)
        .with_context(|| format!("no guest was received at {at}"))?;
    let s = &received.summary;
    eprintln!(
        "vmscope: received {} ({} MiB from a {} host: {} rounds, {} pages, {} bytes); restored in {:.2} ms",
        s.guest_name,
        s.mem_bytes >> 20,
        s.source_host,
        s.rounds,
        s.pages,
        s.bytes,
        s.restore_us as f64 / 1e3
    );
    let restored = received.restored;
    for note in &restored.notes {
        eprintln!("vmscope: {note}");
    }
    let machine = restored.machine;
    let ring = match machine.layout() {
        GuestLayout::Elf(l) => l.entry.ring,
        // A Linux guest runs its kernel at CPL0.
        _ => Ring::Ring0,
    };
    // A Linux guest's console reads this process's standard input from now on (unless a
    // session reads its commands there); its shell gets a raw terminal, as under `run linux`.
    let session_reads_stdin = debugging && args.script.is_none() && args.gdb.is_none();
    let raw_tty = match &restored.meta.guest {
        GuestMeta::Linux { cmdline, .. } if !session_reads_stdin => {
            super::linux::forward_stdin(&machine);
            if cmdline.split_whitespace().any(|w| w == "vmscope.shell=1") {
                tui::rawtty::RawTty::enable()
            } else {
                None
            }
        }
        _ => None,
    };
    vmm::seccomp::install(vmm::seccomp::Thread::Main)?;
    let symbols = symbols_of(&restored.meta.guest_name);
    let outcome = if let Some(addr) = &args.gdb {
        match super::gdb::serve(&machine, addr, &symbols, None, args.gdb_wait)? {
            Some(outcome) => outcome,
            None => return Ok(ExitCode::from(super::gdb::EXIT_KILLED)),
        }
    } else if debugging {
        match super::session::run_for(&machine, &symbols, args, super::session::STOP_TIMEOUT)? {
            Ok(outcome) => outcome,
            Err(status) => return Ok(status),
        }
    } else {
        machine.wait(args.timeout.map(Duration::from_secs_f64))
    };
    drop(raw_tty);
    super::run::finish(args, &machine, outcome, process_start, ring, None, None)
}

/// The guest's symbols: the built-in unikernel's, or the ELF at the path the source names.
fn symbols_of(name: &str) -> inspect::symbols::SymbolTable {
    if name == super::run::UNIKERNEL_NAME {
        return inspect::symbols::SymbolTable::from_elf(name, guests::unikernel::ELF).unwrap_or_default();
    }
    std::fs::read(name)
        .ok()
        .and_then(|bytes| inspect::symbols::SymbolTable::from_elf(name, &bytes).ok())
        .unwrap_or_default()
}
