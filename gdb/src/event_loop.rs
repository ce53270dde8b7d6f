//! How gdb and the guest take turns: while the guest runs, the stub waits for either a
//! byte from gdb (a Ctrl-C) or a stop event from a vCPU, and hands each event to the
//! target (`target/stop.rs`), which decides whether gdb hears of it. When the session's
//! deadline (`--timeout`) passes, the guest is paused and gdb told it was terminated.

use crate::target::VmTarget;
use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::MultiThreadStopReason;
use std::marker::PhantomData;
use std::time::Duration;
use vmm::vstate::vcpu::VcpuEventKind;

/// How long the stub waits for a vCPU event before looking at the connection again.
const POLL: Duration = Duration::from_millis(5);

/// The blocking event loop for connection type `C`.
pub struct VmEventLoop<'a, C>(PhantomData<&'a C>);

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
        if let Some(reply) = target.take_pending() {
            return Ok(Event::TargetStopped(reply));
        }
        loop {
            // `--timeout`: the guest is paused and gdb hears it was terminated by SIGALRM.
            if target.deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                target.machine.pause_all();
                target.timed_out = true;
                return Ok(Event::TargetStopped(MultiThreadStopReason::Terminated(Signal::SIGALRM)));
            }
            if let Some(byte) = conn.peek().map_err(WaitForStopReasonError::Connection)? {
                conn.read().map_err(WaitForStopReasonError::Connection)?;
                return Ok(Event::IncomingData(byte));
            }
            let Some(event) = target.machine.next_event(POLL) else { continue };
            let VcpuEventKind::Stopped { reason, snapshot } = event.kind else { continue };
            tracing::trace!("vCPU {} stopped at {:#x}: {reason:?}", event.vcpu, snapshot.regs.rip);
            if let Some(reply) = target.on_stop(event.vcpu, reason, snapshot) {
                return Ok(Event::TargetStopped(reply));
            }
        }
    }

    fn on_interrupt(target: &mut VmTarget<'a>) -> Result<Option<Self::StopReason>, String> {
        Ok(target.interrupt())
    }
}
