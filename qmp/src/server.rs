//! The QMP thread's loop: accept clients (at most [`MAX_CLIENTS`] at a time), greet them,
//! read their bytes (and passed descriptors) without blocking, answer each complete message,
//! and send events to every client that has negotiated. Nothing a client sends can block the
//! loop: reads and writes are non-blocking, a client's unsent output is bounded
//! ([`MAX_OUTPUT`]) and a client over a limit is dropped.

use crate::commands::{After, ClientState, Monitor};
use crate::guest::Guest;
use crate::listen::{Listener, Stream};
use crate::migration::Migration;
use crate::protocol::{self, Piece, QmpError, Splitter};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use vmm::machine::Machine;
use vmm::migration::Migrated;
use vmm::vstate::vcpu::RunState;

/// The most clients connected at once: 8. Another is told so and closed.
pub const MAX_CLIENTS: usize = 8;
/// The most bytes waiting to be sent to one client (a client that stops reading): 4 MiB.
pub const MAX_OUTPUT: usize = 4 << 20;
/// The most descriptors waiting for a `getfd` on one client.
const MAX_RECEIVED: usize = 4;
/// How long the loop sleeps when nothing happened.
const IDLE: Duration = Duration::from_millis(5);
/// How long a `quit` waits for the frontend to take over the end of the run (it looks
/// every [`crate::QUIT_POLL`] while it waits for the guest); one that does not (a gdb stub or
/// a script session drives the guest) is ended from the QMP thread, as before.
const QUIT_HANDOFF: Duration = Duration::from_secs(2);

/// [`Shared::quit`] (0, its default: no client quit): a client quit; the frontend has not taken it yet.
const QUIT_ASKED: u8 = 1;
/// The frontend ends the run (statistics, exit status 0).
const QUIT_TAKEN: u8 = 2;
/// Nobody took it: the QMP thread ends the process.
const QUIT_ABANDONED: u8 = 3;

/// What the frontend's thread shares with the QMP thread.
#[derive(Default)]
pub struct Shared {
    /// Set to end the loop.
    pub(crate) stop: AtomicBool,
    /// Events to send (name, data), from outside the loop (the guest's end).
    pub(crate) events: Mutex<Vec<(&'static str, Option<Value>)>>,
    /// Where a client's `quit` stands (`QUIT_*`).
    pub(crate) quit: AtomicU8,
    /// The migration a client asked for, which the frontend runs.
    pub(crate) migration: Migration,
}

struct Client {
    stream: Stream,
    state: ClientState,
    splitter: Splitter,
    out: Vec<u8>,
    /// Close once the output is sent.
    closing: bool,
}

impl Client {
    fn send(&mut self, v: &Value) {
        if let Ok(mut line) = serde_json::to_vec(v) {
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
        }
    }

    /// Sends what the socket takes; false when the client is gone or over its limit.
    fn flush(&mut self) -> bool {
        while !self.out.is_empty() {
            match self.stream.write_some(&self.out) {
                Ok(0) => return false,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.out.len() <= MAX_OUTPUT
    }
}

/// Runs the loop until `shared.stop` is set or a client quits.
pub fn serve(listener: Listener, guest: &Guest<'_>, shared: &Shared) {
    let mut monitor = Monitor::new(guest, &shared.migration);
    let mut clients: Vec<Client> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut busy = false;
        while let Ok(Some(stream)) = listener.try_accept() {
            busy = true;
            let unix = stream.is_unix();
            let mut c = Client {
                stream,
                state: ClientState { unix, ..Default::default() },
                splitter: Splitter::default(),
                out: Vec::new(),
                closing: false,
            };
            if clients.len() >= MAX_CLIENTS {
                c.send(&protocol::err(
                    None,
                    &QmpError::generic(format!("{MAX_CLIENTS} QMP clients are connected, the limit")),
                ));
                c.flush();
                continue;
            }
            c.send(&protocol::greeting());
            clients.push(c);
        }
        let mut events: Vec<(&'static str, Option<Value>)> =
            std::mem::take(&mut *shared.events.lock().unwrap_or_else(|e| e.into_inner()));
        events.extend(shared.migration.expire());
        let mut quit = false;
        for c in clients.iter_mut() {
            if c.closing {
                continue;
            }
            match c.stream.read_with_fd(&mut buf) {
                Ok((0, _)) => {
                    c.closing = true;
                    c.out.clear();
                }
                Ok((n, fd)) => {
                    busy = true;
                    if let Some(f) = fd {
                        if c.state.received.len() >= MAX_RECEIVED {
                            c.state.received.remove(0);
                        }
                        c.state.received.push(f);
                    }
                    for piece in c.splitter.feed(&buf[..n]) {
                        match piece {
                            Piece::Message(m) => match protocol::parse(&m) {
                                Ok(req) => {
                                    let id = req.id.clone();
                                    match monitor.execute(&mut c.state, &req, &mut events) {
                                        Ok((ret, after)) => {
                                            c.send(&protocol::ok(id, ret));
                                            quit |= after == After::Quit;
                                        }
                                        Err(e) => c.send(&protocol::err(id, &e)),
                                    }
                                }
                                Err((id, e)) => c.send(&protocol::err(id, &e)),
                            },
                            Piece::Garbage => c.send(&protocol::err(
                                None,
                                &QmpError::generic("JSON parse error, invalid keyword"),
                            )),
                            Piece::TooLong => {
                                let msg = format!(
                                    "JSON message over {} bytes, the limit; closing",
                                    protocol::MAX_MESSAGE
                                );
                                c.send(&protocol::err(None, &QmpError::generic(msg)));
                                c.closing = true;
                                break;
                            }
                        }
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    c.closing = true;
                    c.out.clear();
                }
            }
        }
        if !events.is_empty() {
            let now = SystemTime::now();
            for (name, data) in &events {
                let e = protocol::event(name, data.clone(), now);
                for c in clients.iter_mut().filter(|c| c.state.negotiated && !c.closing) {
                    c.send(&e);
                }
            }
        }
        clients.retain_mut(|c| c.flush() && !(c.closing && c.out.is_empty()));
        if quit {
            // The reply and SHUTDOWN are out (as far as the sockets take them). The guest
            // stops and the socket goes, as QEMU's do on `quit`; the frontend waiting for the
            // guest ends vmscope with status 0 after its usual report (--stats-json).
            let _ = guest.stop();
            drop(clients);
            drop(listener);
            shared.quit.store(QUIT_ASKED, Ordering::Release);
            let until = Instant::now() + QUIT_HANDOFF;
            while Instant::now() < until && shared.quit.load(Ordering::Acquire) == QUIT_ASKED {
                std::thread::sleep(IDLE);
            }
            if shared
                .quit
                .compare_exchange(QUIT_ASKED, QUIT_ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                std::process::exit(0);
            }
            return;
        }
        if shared.stop.load(Ordering::Acquire) {
            // Events queued just before the stop (the guest's SHUTDOWN) still go out.
            let last = std::mem::take(&mut *shared.events.lock().unwrap_or_else(|e| e.into_inner()));
            let now = SystemTime::now();
            for (name, data) in last {
                let e = protocol::event(name, data, now);
                for c in clients.iter_mut().filter(|c| c.state.negotiated && !c.closing) {
                    c.send(&e);
                }
            }
            for _ in 0..20 {
                clients.retain_mut(|c| c.flush() && !c.out.is_empty());
                if clients.is_empty() {
                    break;
                }
                std::thread::sleep(IDLE);
            }
            return;
        }
        if !busy {
            std::thread::sleep(IDLE);
        }
    }
}

/// How the frontend reaches a running QMP server.
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
    /// The bound address (`unix:PATH` or `tcp:HOST:PORT`).
    pub addr: String,
}

impl Handle {
    /// Sends SHUTDOWN to the clients: the guest ended (by its exit, a reset or a fault).
    pub fn guest_ended(&self, reason: &'static str) {
        let data = serde_json::json!({"guest": true, "reason": reason});
        self.shared.events.lock().unwrap_or_else(|e| e.into_inner()).push(("SHUTDOWN", Some(data)));
    }

    /// Whether a client sent `quit`; the first caller that sees it takes over ending vmscope
    /// (true once: the guest is paused, the socket is gone).
    pub fn take_quit(&self) -> bool {
        self.shared.quit.compare_exchange(QUIT_ASKED, QUIT_TAKEN, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Whether this run ends because a client sent `quit`.
    pub fn quit_taken(&self) -> bool {
        self.shared.quit.load(Ordering::Acquire) == QUIT_TAKEN
    }

    /// Runs the migration a client asked for, if any, on this (the machine's) thread: the
    /// guest runs during the pre-copy rounds (a stopped one is resumed, as the target will
    /// run it). On success the returned hold keeps the vCPUs from running again here; on
    /// failure or cancel the guest runs on and `query-migrate` says why.
    pub fn run_migration<'m>(&self, machine: &'m Machine) -> Option<Migrated<'m>> {
        let ((uri, opts), active) = self.shared.migration.take()?;
        let mut events = vec![active];
        let paused = machine.snapshot(0).is_ok_and(|s| s.state != RunState::Running);
        if machine.resume_all().is_ok() && paused {
            events.push(("RESUME", None));
        }
        self.push_events(events);
        let migration = &self.shared.migration;
        let r = vmm::migration::migrate(machine, &uri, &opts, &mut |p| migration.progress(p));
        self.push_events(migration.finish(r.as_ref().map(|m| &m.summary)));
        r.ok()
    }

    fn push_events(&self, events: Vec<(&'static str, Option<Value>)>) {
        self.shared.events.lock().unwrap_or_else(|e| e.into_inner()).extend(events);
    }

    /// Ends the QMP thread (after it sent what is queued).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
    }
}
