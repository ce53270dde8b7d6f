//! vmscope's gdb remote stub, on the gdbstub crate: `vmscope run … --gdb ADDR` lets gdb
//! attach to a guest as it would to QEMU's `-s`, with vCPUs as threads, breakpoints,
//! watchpoints, the system registers, and `monitor` commands that reach vmscope's inspect
//! engine. The stub talks to the VMM only through `vmm::machine::Machine` requests.
//!
//! ```no_run
//! # fn demo(machine: &vmm::machine::Machine) {
//! let symbols = inspect::symbols::SymbolTable::default();
//! let listener = gdb::Listener::bind(&"127.0.0.1:1234".parse().unwrap()).unwrap();
//! let end = gdb::serve(machine, &listener, &symbols, false);
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod arch;
mod event_loop;
mod listen;
mod monitor;
mod target;

pub use arch::{VmRegs, VmscopeX86_64, TARGET_XML};
pub use listen::{Conn, ListenAddr, Listener};
pub use target::VmTarget;

use event_loop::VmEventLoop;
use gdbstub::stub::{DisconnectReason, GdbStub};
use std::time::Duration;
use vmm::machine::{Machine, Outcome};
use vmm::vstate::vcpu::{StopReason, VcpuEventKind};

/// Errors of the stub itself (not of a gdb session, which just ends).
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// The listener failed.
    #[error("cannot accept gdb connections on {addr}")]
    Accept {
        /// Where.
        addr: String,
        /// Why.
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
}

/// Serves gdb sessions on `listener` until the guest ends or gdb kills it. Between
/// sessions (and before the first) the guest runs, unless it is `held` (started paused for
/// `--gdb-wait`): then it stays held until a gdb session lets it run. When a gdb connects,
/// the guest is paused for it. A session that ends by `detach`, or by the connection
/// dropping after it ran the guest, removes its breakpoints and lets the guest run on; a
/// garbage client just ends its session.
pub fn serve(
    machine: &Machine,
    listener: &Listener,
    symbols: &inspect::symbols::SymbolTable,
    mut held: bool,
) -> Result<ServeEnd, GdbError> {
    loop {
        let conn = listener
            .try_accept()
            .map_err(|source| GdbError::Accept { addr: listener.local_addr(), source })?;
        let Some(conn) = conn else {
            // No gdb yet: watch the guest.
            if let Some(event) = machine.next_event(Duration::from_millis(20)) {
                if let VcpuEventKind::Stopped { reason, snapshot } = event.kind {
                    match reason {
                        StopReason::GuestExit { code } => {
                            return Ok(ServeEnd::Guest(Outcome::Exited { code }))
                        }
                        r if r.is_fatal() => {
                            return Ok(ServeEnd::Guest(Outcome::Fault { reason: r, snapshot }))
                        }
                        _ => {}
                    }
                }
            }
            continue;
        };
        // gdb expects a stopped target when it attaches.
        machine.pause_all();
        let mut target = VmTarget::new(machine, symbols);
        let stub = GdbStub::<VmTarget<'_>, Conn>::new(conn);
        let end = stub.run_blocking::<VmEventLoop<'_, Conn>>(&mut target);
        match end {
            Ok(DisconnectReason::TargetExited(code)) => {
                return Ok(ServeEnd::Guest(Outcome::Exited { code: u32::from(code) }));
            }
            Ok(DisconnectReason::Kill) => return Ok(ServeEnd::Killed),
            Ok(DisconnectReason::TargetTerminated(sig)) => {
                tracing::info!("gdb session ended: guest terminated with {sig}");
            }
            Ok(DisconnectReason::Disconnect) => {
                held = false;
                eprintln!("vmscope: gdb detached; the guest runs on");
            }
            Err(e) => {
                held &= !target.ever_resumed;
                let next = if held { "the guest stays held for the next gdb" } else { "the guest runs on" };
                eprintln!("vmscope: gdb session ended: {e}; {next}");
            }
        }
        machine.clear_breakpoints();
        if !held {
            let _ = machine.resume_all();
        }
    }
}
