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

/// How long `step`/`cont` wait for a stop (CPL0 code on PVM is slow).
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the session; returns the outcome if the guest ended during it.
pub fn run(
    machine: &Machine,
    symbols: &inspect::symbols::SymbolTable,
    breaks: &[String],
    script: Option<&Path>,
    json: bool,
    decoder: inspect::disasm::Decoder,
) -> anyhow::Result<Option<Outcome>> {
    let mut session = Session::new(machine, symbols, STOP_TIMEOUT);
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
    for b in breaks {
        let line = format!("break {b}");
        match inspect::command::parse(&line)
            .map_err(anyhow::Error::from)
            .and_then(|c| Ok(session.execute(&c)?))
        {
            Ok(out) => emit(&line, &out),
            Err(e) => anyhow::bail!("cannot set the breakpoint {b}: {}", super::chain(&e)),
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
