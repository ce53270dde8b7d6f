//! The debug session behind `vmscope run … --break X` / `--script FILE`: the guest starts
//! paused, breakpoints go in, it runs to the first stop, then commands are read from the
//! script or standard input (`regs`, `step`, `pt`, `x/N`, `dis`, `cont`, … see `help`).
//! With `--json` each command's result is one JSON line and the guest console goes to
//! stderr so standard output stays machine-readable.

use debugger::{render, Debugger, Output};
use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use vmm::machine::{Machine, Outcome};

/// How long `step`/`cont` wait for a stop unless `--timeout` says otherwise (CPL0 code on
/// PVM is slow).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(120);

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
    // A script past its limits is refused before the guest runs.
    let lines: Box<dyn Iterator<Item = anyhow::Result<String>>> = match script {
        Some(p) => Box::new(read_script(p)?.into_iter().map(Ok)),
        None => Box::new(StdinLines { stdin: std::io::stdin().lock(), number: 0 }),
    };
    let mut session = Debugger::new(machine, symbols, stop_timeout);
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
    plant_breakpoints(&mut session, breaks, &emit)?;
    // With breakpoints, run to the first stop before taking commands; without, commands
    // start with the guest paused before its first instruction.
    if !breaks.is_empty() {
        let first = render::output(session.execute(&inspect::command::Command::Cont)?);
        emit("cont", &first);
        if let Some(end) = first.ended {
            return Ok(Some(end));
        }
    }
    for line in lines {
        let line = line?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !json && script.is_some() {
            println!("(vmscope) {line}");
        }
        if let Some(r) = super::migrate::session_line(machine, line) {
            match r {
                Ok(out) => {
                    emit(line, &out);
                    super::migrate::end_source()
                }
                Err(e) => fail(line, &super::chain(&e)),
            }
            continue;
        }
        if let Some(r) = answer_beside_the_debugger(machine, symbols, line) {
            match r {
                Ok(out) => emit(line, &out),
                Err(e) => fail(line, &e),
            }
            continue;
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
        match session.execute(&cmd).map(render::output) {
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

/// Sets `--break` breakpoints, each as `break X`, or as `hbreak X` where X is not mapped
/// yet: before the guest enables paging (Linux entered through PVH), a kernel address
/// cannot be translated to write an int3 there; a hardware breakpoint matches the linear
/// address instead, as with QEMU's gdbstub.
fn plant_breakpoints(
    session: &mut Debugger,
    breaks: &[String],
    emit: &dyn Fn(&str, &Output),
) -> anyhow::Result<()> {
    let exec = |line: &str| {
        inspect::command::parse(line)
            .map_err(anyhow::Error::from)
            .and_then(|c| Ok(render::output(session.execute(&c)?)))
    };
    for b in breaks {
        let line = format!("break {b}");
        let e = match exec(&line) {
            Ok(out) => {
                emit(&line, &out);
                continue;
            }
            Err(e) => e,
        };
        let hline = format!("hbreak {b}");
        let out = exec(&hline)
            .map_err(|_| anyhow::anyhow!("cannot set the breakpoint {b}: {}", super::chain(&e)))?;
        eprintln!("vmscope: {b} is not mapped yet ({}); using a hardware breakpoint", super::chain(&e));
        emit(&hline, &out);
    }
    Ok(())
}

/// The session commands answered beside the debugger core: `snapshot FILE`, `dump FILE`,
/// and the Linux guest's `ps`, `dmesg`, `uname`, `pt --pid`, `mappings --pid` (read with
/// the kernel's DWARF by `inspect::linux`). `None` when `line` is none of them.
fn answer_beside_the_debugger(
    machine: &Machine,
    symbols: &inspect::symbols::SymbolTable,
    line: &str,
) -> Option<Result<Output, String>> {
    let plain = |text: String, json: serde_json::Value| Output { text, json, ended: None };
    if let Some(r) = vmm::snapshot::command::execute_line(machine, line) {
        return Some(r.map(|o| plain(o.text, o.json)).map_err(|e| e.to_string()));
    }
    if let Some(r) = super::qmp::session_dump(machine, symbols, line) {
        return Some(r);
    }
    let mem = vmm::vstate::memory::PhysView(machine.memory());
    let ctx = || machine.paging_context(0).unwrap_or(inspect::paging::PagingContext::long_mode(0, false));
    let r = inspect::linux::commands::execute_line(line, &mem, ctx, inspect::linux::commands::vmlinux())?;
    Some(r.map(|o| plain(o.text, o.json)).map_err(|e| e.to_string()))
}

/// The longest script file `--script` reads.
pub const MAX_SCRIPT_BYTES: u64 = 1 << 20;
/// The longest command line a script or standard input may hold, in bytes.
pub const MAX_LINE_BYTES: usize = 4096;

/// The lines of the script at `path`; a file larger than [`MAX_SCRIPT_BYTES`], a line longer
/// than [`MAX_LINE_BYTES`] or text that is not UTF-8 is an error naming the file (and line).
fn read_script(path: &Path) -> anyhow::Result<Vec<String>> {
    use std::io::Read;
    let name = path.display();
    let file =
        std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot read the script {name}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_SCRIPT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read the script {name}: {e}"))?;
    if bytes.len() as u64 > MAX_SCRIPT_BYTES {
        anyhow::bail!("the script {name} is larger than {MAX_SCRIPT_BYTES} bytes (1 MiB), the limit");
    }
    let text =
        String::from_utf8(bytes).map_err(|e| anyhow::anyhow!("the script {name} is not UTF-8 text: {e}"))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            if line.len() > MAX_LINE_BYTES {
                anyhow::bail!(
                    "{name}:{}: the line is {} bytes long, longer than the {MAX_LINE_BYTES}-byte limit",
                    i + 1,
                    line.len()
                );
            }
            Ok(line.to_string())
        })
        .collect()
}

/// Command lines from standard input, each at most [`MAX_LINE_BYTES`] long (a longer line is
/// an error naming its number; the reader never buffers more than one line). Ends at
/// end of input or at a read error.
struct StdinLines<R> {
    stdin: R,
    number: usize,
}

impl<R: BufRead> Iterator for StdinLines<R> {
    type Item = anyhow::Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::Read;
        let mut line = Vec::new();
        // One byte more than a line and its newline may hold tells an overlong line apart.
        let limit = MAX_LINE_BYTES as u64 + 2;
        match (&mut self.stdin).take(limit).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        self.number += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.len() > MAX_LINE_BYTES {
            return Some(Err(anyhow::anyhow!(
                "standard input line {} is longer than the {MAX_LINE_BYTES}-byte limit",
                self.number
            )));
        }
        Some(
            String::from_utf8(text.to_vec())
                .map_err(|e| anyhow::anyhow!("standard input line {} is not UTF-8 text: {e}", self.number)),
        )
    }
}

/// The exit status of a session that ended without the guest ending.
pub fn quit_status() -> ExitCode {
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_line_past_the_limit_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.script");
        let long = "x".repeat(MAX_LINE_BYTES + 1);
        std::fs::write(&path, format!("regs\n{}\n{long}\n", "y".repeat(MAX_LINE_BYTES))).unwrap();
        let err = read_script(&path).unwrap_err().to_string();
        assert!(err.contains(&format!("{}:3:", path.display())), "{err}");
        assert!(err.contains("4096-byte limit"), "{err}");
        std::fs::write(&path, "regs\nstep\n").unwrap();
        assert_eq!(read_script(&path).unwrap(), ["regs", "step"]);
    }

    #[test]
    fn a_script_past_one_mib_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.script");
        std::fs::write(&path, "regs\n".repeat((MAX_SCRIPT_BYTES as usize / 5) + 1)).unwrap();
        let err = read_script(&path).unwrap_err().to_string();
        assert!(err.contains("big.script") && err.contains("larger than 1048576 bytes"), "{err}");
    }

    #[test]
    fn standard_input_lines_are_bounded() {
        let long = "z".repeat(MAX_LINE_BYTES + 10);
        let input = format!("regs\r\n{long}\nstep");
        let mut lines = StdinLines { stdin: input.as_bytes(), number: 0 };
        assert_eq!(lines.next().unwrap().unwrap(), "regs");
        let err = lines.next().unwrap().unwrap_err().to_string();
        assert!(err.contains("line 2 is longer than the 4096-byte limit"), "{err}");
    }
}
