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

thread_local! {
    /// The QMP server of the run this thread waits for (set by [`around`] while its body runs).
    static SERVER: std::cell::RefCell<Option<qmp::Handle>> = const { std::cell::RefCell::new(None) };
}

/// Set when a QMP client's `quit` ended the run (for --stats-json's "outcome").
static QUIT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a QMP client's `quit` ended this run.
pub fn quit_requested() -> bool {
    QUIT.load(std::sync::atomic::Ordering::Acquire)
}

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
        SERVER.with(|c| *c.borrow_mut() = Some(server.clone()));
        let result = body();
        SERVER.with(|c| c.borrow_mut().take());
        if let (Ok(Ok(outcome)), false) = (&result, server.quit_taken()) {
            server.guest_ended(qmp::shutdown_reason(outcome));
        }
        server.stop();
        result
    })
}

/// Waits for the guest's end; stops a QMP client causes do not end it. A client's `quit`
/// does: the run ends as if the guest exited with 0 (its report and --stats-json, whose
/// outcome says "qmp-quit"), and vmscope's status is 0, as QEMU's.
pub fn wait(machine: &Machine, limit: Option<Duration>) -> Outcome {
    let Some(server) = SERVER.with(|c| c.borrow().clone()) else {
        return qmp::wait_for_guest(machine, limit);
    };
    qmp::wait_for_guest_or_quit(machine, limit, &server).unwrap_or_else(|| {
        QUIT.store(true, std::sync::atomic::Ordering::Release);
        Outcome::Exited { code: 0 }
    })
}

/// `dump FILE` in a session: an ELF core of the guest (`qmp::dump::execute_line`). `None`
/// when `line` is not a dump command.
pub fn session_dump(
    machine: &Machine,
    symbols: &inspect::symbols::SymbolTable,
    line: &str,
) -> Option<Result<debugger::Output, String>> {
    let r = qmp::dump::execute_line(machine, symbols, line)?;
    Some(r.map(|o| debugger::Output { text: o.text, json: o.json, ended: None }))
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
