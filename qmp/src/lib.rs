//! vmscope's QMP control socket: `vmscope run … --qmp unix:PATH` (or `tcp:HOST:PORT`, loopback)
//! speaks the QEMU Machine Protocol as QEMU does — greeting, capability negotiation, JSON
//! commands with echoed ids, QEMU's error classes, and the `STOP`/`RESUME`/`SHUTDOWN`
//! events — so QMP clients such as `drgn --qemu` work on a vmscope guest. Commands:
//! `query-status`, `stop`, `cont`, `quit`, `system_reset` (refused), `query-target`,
//! `query-cpus-fast`, `migrate`/`query-migrate`/`migrate_cancel` (live migration to a
//! `vmscope run --incoming URI`, with `MIGRATION` events), `human-monitor-command` (`xp`, `x`, `gpa2hva`, `info registers`,
//! `info mtree -f`, `info mem`, `info tlb`, vmscope's own `regs`, `pt`, …), `getfd`/`closefd`
//! (descriptors over the unix socket), `dump-guest-memory` (an ELF core, see
//! `inspect::vmcore`) and `query-dump`. See qmp/DESIGN.md for how a command reaches a vCPU.
//!
//! ```no_run
//! # fn demo(machine: &vmm::machine::Machine) {
//! let addr: qmp::QmpAddr = "unix:/tmp/vm.qmp".parse().unwrap();
//! std::thread::scope(|s| {
//!     let guest = qmp::Guest::new(machine, qmp::SymbolSource::None);
//!     let server = qmp::start(s, guest, &addr, false).unwrap();
//!     let outcome = qmp::wait_for_guest(machine, None);
//!     server.guest_ended(qmp::shutdown_reason(&outcome));
//!     server.stop();
//! });
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod addr;
mod commands;
pub mod dump;
mod guest;
mod hmp;
mod listen;
pub mod migration;
pub mod protocol;
mod server;

pub use addr::QmpAddr;
pub use commands::{COMMANDS, MAX_FDS};
pub use guest::{Guest, SymbolSource};
pub use hmp::{MAX_DUMP_BYTES, MAX_LINES};
pub use server::{Handle, MAX_CLIENTS, MAX_OUTPUT};

use std::sync::Arc;
use std::time::{Duration, Instant};
use vmm::machine::{Machine, Outcome};
use vmm::vstate::vcpu::{StopReason, VcpuEventKind};

/// How often [`wait_for_guest_or_quit`] looks for a client's `quit`.
pub const QUIT_POLL: Duration = Duration::from_millis(50);

/// Errors of starting the QMP server.
#[derive(Debug, thiserror::Error)]
pub enum QmpStartError {
    /// The socket could not be bound.
    #[error("cannot listen for QMP on {addr}")]
    Bind {
        /// Where.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The thread could not be started.
    #[error("cannot start the QMP thread")]
    Spawn(#[source] std::io::Error),
}

/// Binds `addr` and serves QMP on a thread of `scope` until [`Handle::stop`] (or a client's
/// `quit`, which ends the process). The thread installs its own seccomp filter
/// (`vmm::seccomp::Thread::Qmp`).
pub fn start<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    guest: Guest<'env>,
    addr: &QmpAddr,
    allow_remote: bool,
) -> Result<Handle, QmpStartError> {
    let listener = listen::Listener::bind(addr, allow_remote)
        .map_err(|source| QmpStartError::Bind { addr: addr.to_string(), source })?;
    let shared = Arc::new(server::Shared::default());
    let handle = Handle { shared: shared.clone(), addr: listener.local_addr() };
    std::thread::Builder::new()
        .name("qmp".into())
        .spawn_scoped(scope, move || {
            if let Err(e) = vmm::seccomp::install(vmm::seccomp::Thread::Qmp) {
                eprintln!("vmscope: the QMP thread cannot install its seccomp filter: {e}; QMP is off");
                return;
            }
            server::serve(listener, &guest, &shared);
        })
        .map_err(QmpStartError::Spawn)?;
    Ok(handle)
}

/// The `reason` of the SHUTDOWN event for how the guest ended.
pub fn shutdown_reason(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Exited { .. } => "guest-shutdown",
        Outcome::Fault { reason: StopReason::Reset, .. } => "guest-reset",
        Outcome::Fault { .. } => "guest-panic",
        Outcome::TimedOut { .. } => "host-signal",
    }
}

/// Waits until the guest ends or `limit` passes, as `Machine::wait` does, except that the
/// stops a QMP client causes (`stop`, dumps: `Paused`) do not end the run.
pub fn wait_for_guest(machine: &Machine, limit: Option<Duration>) -> Outcome {
    machine.wait_past_pauses(limit)
}

/// As [`wait_for_guest`], and also ends when a client of `server` sent `quit`: then `None`
/// (the vCPUs are paused and the socket is gone; the frontend ends vmscope with status 0
/// after its usual report, as QEMU ends on `quit`). A client's `migrate` runs here, on the
/// machine's thread ([`migration`]); once the guest has moved, its vCPUs stay held here
/// (`postmigrate`) until `quit` or the time limit.
pub fn wait_for_guest_or_quit(
    machine: &Machine,
    limit: Option<Duration>,
    server: &Handle,
) -> Option<Outcome> {
    let deadline = limit.and_then(|l| Instant::now().checked_add(l));
    // Keeps the vCPUs held once the guest runs on the target: it must never run twice.
    let mut moved = None;
    loop {
        if server.take_quit() {
            return None;
        }
        if moved.is_none() {
            moved = server.run_migration(machine);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            machine.pause_all();
            let snapshot = machine.snapshot(0).ok().map(Box::new);
            return Some(Outcome::TimedOut { limit: limit.unwrap_or_default(), snapshot });
        }
        let slice = deadline.map_or(QUIT_POLL, |d| d.saturating_duration_since(now).min(QUIT_POLL));
        match machine.next_event(slice) {
            Some(event) => {
                if let VcpuEventKind::Stopped { reason, snapshot } = event.kind {
                    if reason != StopReason::Paused {
                        return Some(
                            Outcome::from_stop(&reason, &snapshot)
                                .unwrap_or(Outcome::Fault { reason, snapshot }),
                        );
                    }
                }
            }
            // A wait that ends before its time is not a time-out: every vCPU thread is gone,
            // which the machine's own wait reports.
            None if now.elapsed() < slice / 2 => return Some(machine.wait_past_pauses(None)),
            None => {}
        }
    }
}
