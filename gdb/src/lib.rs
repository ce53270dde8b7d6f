//! vmscope's gdb remote stub, on the gdbstub crate: `vmscope run … --gdb ADDR` lets gdb
//! attach to a guest as it would to QEMU's `-s`, with vCPUs as threads, breakpoints,
//! watchpoints, the system registers, and `monitor` commands that reach vmscope's inspect
//! engine. The stub talks to the VMM only through `vmm::machine::Machine` requests; see
//! gdb/DESIGN.md for how a packet becomes a vCPU request and how a stop comes back.
//!
//! ```no_run
//! # fn demo(machine: &vmm::machine::Machine) -> Result<(), gdb::GdbError> {
//! let symbols = inspect::symbols::SymbolTable::default();
//! let addr: gdb::ListenAddr = "127.0.0.1:1234".parse().unwrap();
//! let listener = gdb::Listener::bind(&addr).unwrap();
//! // Serves gdb sessions until the guest ends or gdb kills it; `false`: the guest was not
//! // started paused; `None`: no time limit.
//! match gdb::serve(machine, &listener, &symbols, false, None)? {
//!     gdb::ServeEnd::Guest(outcome) => println!("the guest ended: {outcome:?}"),
//!     gdb::ServeEnd::Killed => println!("gdb killed the guest"),
//!     gdb::ServeEnd::TimedOut { limit } => println!("{limit:?} passed; the guest is paused"),
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod arch;
mod cache;
mod event_loop;
mod listen;
mod monitor;
mod step;
mod target;

pub use arch::{VmRegs, VmscopeX86_64, TARGET_XML};
pub use listen::{serve_connection, Conn, ListenAddr, Listener, SessionEnd};
pub use target::VmTarget;

pub use debugger::watch::{DR_SLOTS, MAX_WATCH_LEN};
use event_loop::VmEventLoop;
use gdbstub::stub::{DisconnectReason, GdbStub};
pub use listen::{PACKET_TIMEOUT, WRITE_TIMEOUT};
pub use monitor::{MAX_MONITOR_DIS, MAX_MONITOR_OUTPUT, MAX_MONITOR_READ};
use std::time::{Duration, Instant};
use vmm::machine::{Machine, Outcome};
use vmm::vstate::vcpu::VcpuEventKind;

/// How long a new client has to send its first byte before it is turned away.
const GREETING_TIMEOUT: Duration = Duration::from_secs(10);

/// The packet size the stub announces (`PacketSize` in `qSupported`) and its packet buffer:
/// a longer packet from a client ends its session (the connection counts each packet's bytes).
pub const PACKET_SIZE: usize = 4096;

/// The most bytes one `m` packet may read: what fits hex-encoded in [`PACKET_SIZE`], which is
/// what gdb asks for at most. A larger `m` gets an error reply (E22).
pub const MAX_MEM_READ: usize = PACKET_SIZE / 2;

/// Errors of the stub itself (not of a gdb session, which just ends).
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// gdbstub refused its configuration (a bug).
    #[error("cannot set up the gdb stub: {0}")]
    Setup(String),
    /// The listener failed.
    #[error("cannot accept gdb connections on {addr}")]
    Accept {
        /// Where.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
}

/// How serving ended.
#[derive(Debug)]
pub enum ServeEnd {
    /// The guest ran to its end (with gdb attached or not).
    Guest(Outcome),
    /// gdb killed the guest.
    Killed,
    /// The time limit passed (with a gdb attached or not); the vCPUs are paused.
    TimedOut {
        /// The limit.
        limit: Duration,
    },
}

/// Serves gdb sessions on `listener` until the guest ends or gdb kills it. Between
/// sessions (and before the first) the guest runs, unless it is `held` (started paused for
/// `--gdb-wait`): then it stays held until a gdb session lets it run. When a gdb connects,
/// the guest is paused for it. A session that ends by `detach`, or by the connection
/// dropping after it ran the guest, removes its breakpoints and lets the guest run on. A
/// client that does not speak the protocol is turned away without touching the guest.
///
/// `limit` (`--timeout`) bounds all of it, counted from the call: when it passes, the vCPUs
/// are paused and any session ends (gdb hears SIGALRM if the guest was running, or the
/// connection closes while gdb was at its prompt).
pub fn serve(
    machine: &Machine,
    listener: &Listener,
    symbols: &inspect::symbols::SymbolTable,
    mut held: bool,
    limit: Option<Duration>,
) -> Result<ServeEnd, GdbError> {
    // A limit too far away to represent is no limit.
    let deadline = limit.and_then(|l| Instant::now().checked_add(l));
    let timed_out = |limit: Option<Duration>| {
        machine.pause_all();
        Ok(ServeEnd::TimedOut { limit: limit.unwrap_or_default() })
    };
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return timed_out(limit);
        }
        let conn = listener
            .try_accept(deadline)
            .map_err(|source| GdbError::Accept { addr: listener.local_addr(), source })?;
        let Some(mut conn) = conn else {
            // No gdb yet: watch the guest.
            if let Some(outcome) = watch_guest(machine, Duration::from_millis(20)) {
                return Ok(ServeEnd::Guest(outcome));
            }
            continue;
        };
        match greet(machine, &mut conn, deadline) {
            Greeting::Gdb => {}
            Greeting::TimedOut => return timed_out(limit),
            Greeting::GuestEnded(outcome) => return Ok(ServeEnd::Guest(outcome)),
            Greeting::Refused(why) => {
                eprintln!("vmscope: turned away a client on {}: {why}", listener.local_addr());
                continue;
            }
        }
        // gdb expects a stopped target when it attaches.
        machine.pause_all();
        let mut target = VmTarget::new(machine, symbols);
        target.deadline = deadline;
        let stub = GdbStub::<VmTarget<'_>, Conn>::builder(conn)
            .packet_buffer_size(PACKET_SIZE)
            .build()
            .map_err(|e| GdbError::Setup(e.to_string()))?;
        let end = stub.run_blocking::<VmEventLoop<'_, Conn>>(&mut target);
        if let Some(uri) = &target.migrated {
            eprintln!("vmscope: the guest migrated to {uri} (gdb's monitor migrate); this process ends");
            vmm::migration::command::end_source();
        }
        if matches!(end, Ok(DisconnectReason::Kill)) {
            return Ok(ServeEnd::Killed);
        }
        match end {
            Ok(DisconnectReason::Disconnect) => {
                held = false;
                if target.end.is_none() {
                    eprintln!("vmscope: gdb detached; the guest runs on");
                }
            }
            Err(e) => {
                held &= !target.ever_resumed;
                tracing::info!("gdb session ended: {e}");
                let next = match &target.end {
                    Some(_) => "",
                    None if held => "; the guest stays held for the next gdb",
                    None => "; the guest runs on",
                };
                eprintln!("vmscope: gdb session ended: {e}{next}");
            }
            Ok(_) => {}
        }
        if let Some(outcome) = target.end {
            return Ok(ServeEnd::Guest(outcome));
        }
        if target.timed_out || deadline.is_some_and(|d| Instant::now() >= d) {
            return timed_out(limit);
        }
        if let Some(outcome) = quiesce(machine) {
            return Ok(ServeEnd::Guest(outcome));
        }
        machine.clear_breakpoints();
        if !held {
            let _ = machine.resume_all();
        }
    }
}

/// Waits up to `timeout` for a vCPU event; returns the guest's outcome if it ended.
fn watch_guest(machine: &Machine, timeout: Duration) -> Option<Outcome> {
    let event = machine.next_event(timeout)?;
    let VcpuEventKind::Stopped { reason, snapshot } = event.kind else { return None };
    Outcome::from_stop(&reason, &snapshot)
}

/// Stops every vCPU and waits until each has taken the pause (requests are handled in
/// order, so a vCPU that answers a snapshot has handled the pause before it), leaving no
/// step of a finished session half done; returns the guest's outcome if it ended meanwhile.
fn quiesce(machine: &Machine) -> Option<Outcome> {
    machine.pause_all();
    for index in 0..machine.vcpu_count() {
        let _ = machine.snapshot(index);
    }
    let mut outcome = None;
    while let Some(event) = machine.next_event(Duration::ZERO) {
        if let VcpuEventKind::Stopped { reason, snapshot } = event.kind {
            outcome = Outcome::from_stop(&reason, &snapshot).or(outcome);
        }
    }
    outcome
}

/// What a new client turned out to be.
enum Greeting {
    /// Its first byte starts a packet, an acknowledgement or an interrupt.
    Gdb,
    /// It did not speak the remote protocol.
    Refused(String),
    /// The guest ended while the client made up its mind.
    GuestEnded(Outcome),
    /// The time limit passed meanwhile.
    TimedOut,
}

/// Looks at a new client's first byte (gdb sends `+` at once) while the guest goes on.
fn greet(machine: &Machine, conn: &mut Conn, limit: Option<Instant>) -> Greeting {
    let deadline = Instant::now() + GREETING_TIMEOUT;
    loop {
        if limit.is_some_and(|l| Instant::now() >= l) {
            return Greeting::TimedOut;
        }
        match conn.peek() {
            Ok(Some(b'+' | b'-' | b'$' | 0x03)) => return Greeting::Gdb,
            Ok(Some(byte)) => return Greeting::Refused(format!("its first byte {byte:#04x} is not gdb's")),
            Ok(None) if Instant::now() >= deadline => {
                return Greeting::Refused(format!("it sent nothing for {} s", GREETING_TIMEOUT.as_secs()))
            }
            Ok(None) => {
                if let Some(outcome) = watch_guest(machine, Duration::from_millis(5)) {
                    return Greeting::GuestEnded(outcome);
                }
            }
            Err(e) => return Greeting::Refused(format!("it went away ({e})")),
        }
    }
}
