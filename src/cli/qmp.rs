//! `--qmp ADDR` on `vmscope run` (a QMP control socket beside any guest and any debugger),
//! `vmscope dump SOCKET FILE` (a QMP client that asks a running vmscope for a memory dump),
//! and `dump FILE` in a session or gdb's `monitor`.

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use vmm::machine::{Machine, Outcome};

/// Serves QMP on `addr` (if given) while `body` runs the guest; the guest's end is sent to
/// the clients as a SHUTDOWN event. The socket is bound before `body` runs (so before the
/// main thread's seccomp filter, which `body` installs).
pub fn around(
    machine: &Machine,
    addr: Option<&qmp::QmpAddr>,
    any_address: bool,
    symbols: qmp::SymbolSource,
    body: impl FnOnce() -> anyhow::Result<Result<Outcome, ExitCode>>,
) -> anyhow::Result<Result<Outcome, ExitCode>> {
    let Some(addr) = addr else { return body() };
    std::thread::scope(|s| {
        let guest = qmp::Guest::new(machine, symbols);
        let server = qmp::start(s, guest, addr, any_address)?;
        eprintln!("vmscope: QMP listening on {}", server.addr);
        let result = body();
        if let Ok(Ok(outcome)) = &result {
            server.guest_ended(qmp::shutdown_reason(outcome));
        }
        server.stop();
        result
    })
}

/// Waits for the guest's end; stops a QMP client causes do not end it.
pub fn wait(machine: &Machine, timeout: Option<f64>) -> Outcome {
    qmp::wait_for_guest(machine, timeout.map(Duration::from_secs_f64))
}

/// `dump FILE` in a session or gdb's `monitor`: an ELF core of the paused guest. `None`
/// when `line` is not a dump command.
pub fn session_dump(
    machine: &Machine,
    symbols: &inspect::symbols::SymbolTable,
    line: &str,
) -> Option<Result<debugger::Output, String>> {
    let rest = line.trim().strip_prefix("dump")?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let path = rest.trim();
    if path.is_empty() {
        return Some(Err("dump: give a file, e.g. `dump /tmp/vmcore`".into()));
    }
    Some(write_dump(machine, symbols, path))
}

fn write_dump(
    machine: &Machine,
    symbols: &inspect::symbols::SymbolTable,
    path: &str,
) -> Result<debugger::Output, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let guest = qmp::Guest::with_symbols(machine, symbols);
    let was_running = guest.running();
    guest.stop()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("dump: cannot create {path}: {e}"))?;
    let r = qmp::dump::write(&guest, qmp::dump::DumpRequest::default(), &mut file);
    if was_running {
        guest.cont()?;
    }
    let report = r.map_err(|e| format!("dump: {path}: {e}"))?;
    let info = match report.vmcoreinfo {
        Some(s) => format!(", VMCOREINFO {}", s.name()),
        None => String::new(),
    };
    let text = format!(
        "wrote {path}: {} bytes ({} of guest memory, {} vCPU(s){info})\n",
        report.bytes,
        report.memory,
        machine.vcpu_count()
    );
    let json = json!({"dump": path, "bytes": report.bytes, "memory": report.memory, "vmcoreinfo": report.vmcoreinfo.map(|s| s.name())});
    Ok(debugger::Output { text, json, ended: None })
}

/// Arguments of `vmscope dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// The QMP socket of a running vmscope (`--qmp unix:PATH`): a path, or tcp:HOST:PORT.
    socket: String,
    /// Where to write the ELF core file (created with mode 0600).
    file: PathBuf,
    /// Write linear addresses from vCPU 0's page tables (QMP's `paging: true`).
    #[arg(long)]
    paging: bool,
}

/// Runs `vmscope dump`: connects, negotiates, and asks for `dump-guest-memory` to the file.
pub fn dump(args: DumpArgs) -> anyhow::Result<ExitCode> {
    let file =
        std::path::absolute(&args.file).with_context(|| format!("bad path {}", args.file.display()))?;
    let stream: Box<dyn ReadWrite> = match args.socket.strip_prefix("tcp:") {
        Some(a) => Box::new(
            std::net::TcpStream::connect(a).with_context(|| format!("cannot connect to {}", args.socket))?,
        ),
        None => {
            let p = args.socket.strip_prefix("unix:").unwrap_or(&args.socket);
            Box::new(
                std::os::unix::net::UnixStream::connect(p)
                    .with_context(|| format!("cannot connect to {p}"))?,
            )
        }
    };
    let mut client = Client { reader: BufReader::new(stream) };
    let greeting = client.next_reply()?;
    anyhow::ensure!(
        greeting.get("QMP").is_some(),
        "{} did not greet as a QMP server: {greeting}",
        args.socket
    );
    client.call(json!({"execute": "qmp_capabilities"}))?;
    let cmd = json!({"execute": "dump-guest-memory", "arguments": {"paging": args.paging, "protocol": format!("file:{}", file.display())}});
    client.call(cmd)?;
    let status = client.call(json!({"execute": "query-dump"}))?;
    eprintln!("vmscope: wrote {} ({} bytes of guest memory)", file.display(), status["completed"]);
    Ok(ExitCode::SUCCESS)
}

trait ReadWrite: std::io::Read + Write {}
impl<T: std::io::Read + Write> ReadWrite for T {}

struct Client {
    reader: BufReader<Box<dyn ReadWrite>>,
}

impl Client {
    /// The next message that is not an event.
    fn next_reply(&mut self) -> anyhow::Result<Value> {
        loop {
            let mut line = String::new();
            let n = std::io::Read::take(&mut self.reader, qmp::protocol::MAX_MESSAGE as u64)
                .read_line(&mut line)?;
            anyhow::ensure!(n > 0, "the QMP server closed the connection");
            let v: Value = serde_json::from_str(&line)
                .with_context(|| format!("not JSON from the QMP server: {line:?}"))?;
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    }

    fn call(&mut self, cmd: Value) -> anyhow::Result<Value> {
        let mut bytes = serde_json::to_vec(&cmd)?;
        bytes.extend_from_slice(b"\r\n");
        self.reader.get_mut().write_all(&bytes)?;
        let reply = self.next_reply()?;
        if let Some(e) = reply.get("error") {
            anyhow::bail!(
                "{}: {}: {}",
                cmd["execute"],
                e["class"].as_str().unwrap_or("?"),
                e["desc"].as_str().unwrap_or("?")
            );
        }
        Ok(reply["return"].clone())
    }
}
