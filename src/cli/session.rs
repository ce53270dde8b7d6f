//! The debug session behind `vmscope run … --break X` / `--script FILE`: the guest starts
//! paused, breakpoints go in, it runs to the first stop, then commands are read from the
//! script or standard input (`regs`, `step`, `pt`, `x/N`, `dis`, `cont`, … see `help`).
//! With `--json` each command's result is one JSON line and the guest console goes to
//! stderr so standard output stays machine-readable.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use vmm::machine::commands::{Output, Session};
use vmm::machine::{Machine, Outcome};

/// How long `step`/`cont` wait for a stop unless `--timeout` says otherwise (CPL0 code on
/// PVM is slow).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the session `args` asks for (`--break`, `--script`, `--json`, `--decoder`; `cont`
/// waits `--timeout` or `default_wait`) and turns a `quit` into the exit status.
pub fn run_for(
    machine: &Machine,
    symbols: &inspect::symbols::SymbolTable,
    args: &super::run::RunArgs,
    default_wait: Duration,
) -> anyhow::Result<Result<Outcome, ExitCode>> {
    let wait = args.timeout.map_or(default_wait, Duration::from_secs_f64);
    Ok(run(machine, symbols, &args.breaks, args.script.as_deref(), args.json, args.decoder, wait)?
        .ok_or_else(quit_status))
}

/// Runs the session; returns the outcome if the guest ended during it.
pub fn run(
    machine: &Machine,
    symbols: &inspect::symbols::SymbolTable,
    breaks: &[String],
    script: Option<&Path>,
    json: bool,
    decoder: inspect::disasm::Decoder,
    stop_timeout: Duration,
) -> anyhow::Result<Option<Outcome>> {
    let mut session = Session::new(machine, symbols, stop_timeout);
    session.decoder = decoder;
    let emit = |line: &str, out: &Output| {
        if json {
            println!("{}", serde_json::json!({ "input": line, "result": out.json }));
        } else {
            print!("{}", out.text);
        }
    };
    let fail = |line: &str, e: &dyn std::fmt::Display| {
        if json {
            println!("{}", serde_json::json!({ "input": line, "error": e.to_string() }));
        } else {
            println!("error: {e}");
        }
    };
    let exec = |session: &mut Session, line: &str| {
        inspect::command::parse(line).map_err(anyhow::Error::from).and_then(|c| Ok(session.execute(&c)?))
    };
    for b in breaks {
        let line = format!("break {b}");
        match exec(&mut session, &line) {
            Ok(out) => emit(&line, &out),
            Err(e) => {
                // Before the guest enables paging (Linux entered through PVH), a kernel
                // address cannot be translated to write an int3 there; a hardware
                // breakpoint matches the linear address instead, as with QEMU's gdbstub.
                let hline = format!("hbreak {b}");
                match exec(&mut session, &hline) {
                    Ok(out) => {
                        eprintln!(
                            "vmscope: {b} is not mapped yet ({}); using a hardware breakpoint",
                            super::chain(&e)
                        );
                        emit(&hline, &out)
                    }
                    Err(_) => anyhow::bail!("cannot set the breakpoint {b}: {}", super::chain(&e)),
                }
            }
        }
    }
    // With breakpoints, run to the first stop before taking commands; without, commands
    // start with the guest paused before its first instruction.
    if !breaks.is_empty() {
        let first = session.execute(&inspect::command::Command::Cont)?;
        emit("cont", &first);
        if let Some(end) = first.ended {
            return Ok(Some(end));
        }
    }
    let lines: Box<dyn Iterator<Item = String>> = match script {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read the script {}: {e}", p.display()))?;
            Box::new(text.lines().map(String::from).collect::<Vec<_>>().into_iter())
        }
        None => Box::new(std::io::stdin().lock().lines().map_while(Result::ok)),
    };
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !json && script.is_some() {
            println!("(vmscope) {line}");
        }
        let cmd = match inspect::command::parse(line) {
            Ok(c) => c,
            Err(e) => {
                fail(line, &e);
                continue;
            }
        };
        if cmd == inspect::command::Command::Quit {
            break;
        }
        match session.execute(&cmd) {
            Ok(out) => {
                emit(line, &out);
                if let Some(end) = out.ended {
                    return Ok(Some(end));
                }
            }
            Err(e) => fail(line, &e),
        }
    }
    Ok(None)
}

/// The exit status of a session that ended without the guest ending.
pub fn quit_status() -> ExitCode {
    ExitCode::SUCCESS
}
