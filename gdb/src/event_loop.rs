//! How gdb and the guest take turns: while the guest runs, the stub waits for either a
//! byte from gdb (a Ctrl-C, or a packet) or a stop event from a vCPU. A stop of one vCPU
//! pauses the others (all-stop), and is translated into gdb's stop reply.

use crate::target::{tid_of, VmTarget};
use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::breakpoints::WatchKind;
use std::marker::PhantomData;
use std::time::Duration;
use vmm::vstate::vcpu::{StopReason, VcpuEventKind};

/// How often the stub looks at the connection while the guest runs.
const POLL: Duration = Duration::from_millis(5);

/// The blocking event loop for connection type `C`.
pub struct VmEventLoop<'a, C>(PhantomData<&'a C>);

/// Translates a vCPU stop into gdb's terms; `None` for stops gdb should not see.
pub fn stop_reply(
    vcpu: usize,
    reason: &StopReason,
    interrupted: &mut bool,
) -> Option<MultiThreadStopReason<u64>> {
    let tid = tid_of(vcpu);
    Some(match reason {
        StopReason::Paused if *interrupted => {
            *interrupted = false;
            MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGINT }
        }
        // A pause we asked for to stop the other vCPUs (all-stop): not news to gdb.
        StopReason::Paused => return None,
        StopReason::Step => MultiThreadStopReason::DoneStep,
        StopReason::Breakpoint { .. } => MultiThreadStopReason::SwBreak(tid),
        StopReason::HwBreakpoint { .. } => MultiThreadStopReason::HwBreak(tid),
        StopReason::GuestExit { code } => MultiThreadStopReason::Exited((*code & 0xff) as u8),
        StopReason::InternalError(_) => {
            MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGILL }
        }
        StopReason::Shutdown | StopReason::FailEntry { .. } => {
            MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGSEGV }
        }
        _ => MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGABRT },
    })
}

impl<'a, C> BlockingEventLoop for VmEventLoop<'a, C>
where
    C: ConnectionExt<Error = std::io::Error>,
{
    type Target = VmTarget<'a>;
    type Connection = C;
    type StopReason = MultiThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut VmTarget<'a>,
        conn: &mut C,
    ) -> Result<Event<Self::StopReason>, WaitForStopReasonError<String, std::io::Error>> {
        loop {
            if let Some(byte) = conn.peek().map_err(WaitForStopReasonError::Connection)? {
                conn.read().map_err(WaitForStopReasonError::Connection)?;
                return Ok(Event::IncomingData(byte));
            }
            let Some(event) = target.machine.next_event(POLL) else { continue };
            let VcpuEventKind::Stopped { reason, snapshot } = event.kind else { continue };
            let Some(reply) = stop_reply(event.vcpu, &reason, &mut target.interrupted) else { continue };
            // All-stop: everyone else pauses too.
            target.machine.pause_all();
            target.running = false;
            if let StopReason::HwBreakpoint { index, .. } = reason {
                let slot = target.machine.hw_breakpoints()[usize::from(index) & 3];
                if let Some(bp) = slot.filter(|b| b.kind != vmm::machine::HwKind::Execute) {
                    let kind = if bp.kind == vmm::machine::HwKind::Write {
                        WatchKind::Write
                    } else {
                        WatchKind::ReadWrite
                    };
                    return Ok(Event::TargetStopped(MultiThreadStopReason::Watch {
                        tid: tid_of(event.vcpu),
                        kind,
                        addr: bp.addr,
                    }));
                }
            }
            tracing::debug!("vCPU {} stopped at {:#x}: {reason:?}", event.vcpu, snapshot.regs.rip);
            return Ok(Event::TargetStopped(reply));
        }
    }

    fn on_interrupt(target: &mut VmTarget<'a>) -> Result<Option<Self::StopReason>, String> {
        if !target.running {
            // Already stopped: no pause event will come, answer at once.
            return Ok(Some(MultiThreadStopReason::SignalWithThread {
                tid: tid_of(0),
                signal: Signal::SIGINT,
            }));
        }
        target.interrupted = true;
        target.machine.pause_all();
        Ok(None)
    }
}
