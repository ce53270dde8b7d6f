//! vCPU stop events become gdb stop replies. All-stop: when gdb hears of one vCPU's stop,
//! the others are paused. Stops gdb did not ask about (the pauses of all-stop itself, the
//! steps of a range or of an emulated watchpoint) are handled here and never reach gdb.

use super::breakpoints::gdb_kind;
use super::{tid_of, VmTarget};
use crate::step::{AfterStep, BreakpointAt};
use gdbstub::common::Signal;
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::breakpoints::WatchKind;
use vmm::machine::{HwKind, Outcome};
use vmm::vstate::vcpu::{StopReason, VcpuSnapshot};

/// A stop as gdb hears it.
pub type Reply = MultiThreadStopReason<u64>;

/// The signal gdb sees for a stop that ends the guest.
pub fn fault_signal(reason: &StopReason) -> Signal {
    match reason {
        // The emulator (or the CPU) could not run the instruction at RIP.
        StopReason::InternalError(_) => Signal::SIGILL,
        // A triple fault, or an entry the hardware refused: the guest's state is broken.
        StopReason::Shutdown | StopReason::FailEntry { .. } => Signal::SIGSEGV,
        _ => Signal::SIGABRT,
    }
}

impl VmTarget<'_> {
    /// A stop that was waiting to be reported (it raced with the last one), or the news
    /// that a faulted guest cannot be resumed.
    pub(crate) fn take_pending(&mut self) -> Option<Reply> {
        if std::mem::take(&mut self.terminate) {
            if let Some(Outcome::Fault { reason, .. }) = &self.end {
                self.running = false;
                return Some(MultiThreadStopReason::Terminated(fault_signal(reason)));
            }
        }
        while let Some((vcpu, reason, snapshot)) = self.pending.pop_front() {
            if let Some(reply) = self.on_stop(vcpu, reason, snapshot) {
                return Some(reply);
            }
        }
        None
    }

    /// Handles vCPU `vcpu`'s stop; returns what to tell gdb, if anything. When something is
    /// returned, every vCPU is stopped and the cache holds the stopped vCPU's registers.
    pub(crate) fn on_stop(
        &mut self,
        vcpu: usize,
        reason: StopReason,
        snapshot: Box<VcpuSnapshot>,
    ) -> Option<Reply> {
        let tid = tid_of(vcpu);
        if let Some(end) = Outcome::from_stop(&reason, &snapshot) {
            return Some(self.on_end(vcpu, end, snapshot));
        }
        let reply = match reason {
            StopReason::Paused if std::mem::take(&mut self.interrupted) => {
                MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGINT }
            }
            // A pause we asked for to stop the other vCPUs (all-stop): not news to gdb.
            StopReason::Paused => return None,
            StopReason::Step => self.after_step(vcpu, &snapshot)?,
            StopReason::Breakpoint { .. } => MultiThreadStopReason::SwBreak(tid),
            StopReason::HwBreakpoint { index, .. } => self.hw_stop(vcpu, index),
            // Every other stop ends the guest (handled above); this one is not news.
            _ => return None,
        };
        Some(self.stopped(vcpu, reply, snapshot))
    }

    /// The guest ended (`end`) at vCPU `vcpu`'s stop: gdb hears the exit code, or the
    /// signal of the fault.
    fn on_end(&mut self, vcpu: usize, end: Outcome, snapshot: Box<VcpuSnapshot>) -> Reply {
        let tid = tid_of(vcpu);
        let reply = match &end {
            // gdb's exit status is a byte; vmscope exits with the same.
            Outcome::Exited { code } => MultiThreadStopReason::Exited((code & 0xff) as u8),
            Outcome::Fault { reason, .. } => {
                MultiThreadStopReason::SignalWithThread { tid, signal: fault_signal(reason) }
            }
            Outcome::TimedOut { .. } => {
                MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGALRM }
            }
        };
        self.end = Some(end);
        self.stopped(vcpu, reply, snapshot)
    }

    /// Every vCPU stops (all-stop) and the cache holds the stopped vCPU's registers.
    fn stopped(&mut self, vcpu: usize, reply: Reply, snapshot: Box<VcpuSnapshot>) -> Reply {
        self.stop_others(vcpu);
        self.running = false;
        self.interrupted = false;
        self.cache.stopped(self.machine, *snapshot);
        reply
    }

    /// A single step of vCPU `vcpu` finished: report it, or take the next one.
    fn after_step(&mut self, vcpu: usize, snapshot: &VcpuSnapshot) -> Option<Reply> {
        let tid = tid_of(vcpu);
        let in_flight = self.in_flight.remove(&vcpu).unwrap_or_default();
        if let Some(w) = debugger::watch::first_hit(&self.watches, &in_flight) {
            return Some(MultiThreadStopReason::Watch { tid, kind: gdb_kind(w.kind), addr: w.addr });
        }
        if std::mem::take(&mut self.interrupted) {
            return Some(MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGINT });
        }
        // A step of a vCPU gdb does not think is moving (it finished just as all-stop
        // paused that vCPU): it stays paused, as gdb believes.
        let &stepping = self.stepping.get(&vcpu)?;
        let rip = snapshot.regs.rip;
        Some(match stepping.after_step(rip, self.breakpoint_at(rip)) {
            AfterStep::Again => {
                self.cache.remember(snapshot.clone());
                if let Err(e) = self.step_once(vcpu) {
                    tracing::warn!("cannot step vCPU {vcpu} again: {e}");
                    return Some(MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGTRAP });
                }
                return None;
            }
            // gdbstub's DoneStep is a bare S05, after which gdb asks for the thread list
            // to learn which thread stopped; naming the thread saves those round trips.
            AfterStep::Done => MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGTRAP },
            AfterStep::SwBreak => MultiThreadStopReason::SwBreak(tid),
            AfterStep::HwBreak => MultiThreadStopReason::HwBreak(tid),
        })
    }

    /// What gdb has at `rip`.
    fn breakpoint_at(&self, rip: u64) -> BreakpointAt {
        if self.machine.breakpoints().contains(rip) {
            BreakpointAt::Software
        } else if self
            .machine
            .hw_breakpoints()
            .iter()
            .flatten()
            .any(|b| b.kind == HwKind::Execute && b.addr == rip)
        {
            BreakpointAt::Hardware
        } else {
            BreakpointAt::None
        }
    }

    /// A debug register fired: an execute breakpoint, or a watchpoint (reported with the
    /// watchpoint gdb set that covers the slot, in the kind gdb asked for).
    fn hw_stop(&self, vcpu: usize, index: u8) -> Reply {
        let tid = tid_of(vcpu);
        let slot = self.machine.hw_breakpoints()[usize::from(index) & 3];
        match slot.filter(|b| b.kind != HwKind::Execute) {
            None => MultiThreadStopReason::HwBreak(tid),
            Some(bp) => {
                let watch = self.watches.iter().find(|w| w.addr <= bp.addr && bp.addr < w.addr + w.len);
                let kind = match (watch, bp.kind) {
                    (Some(w), _) => gdb_kind(w.kind),
                    (None, HwKind::Write) => WatchKind::Write,
                    (None, _) => WatchKind::ReadWrite,
                };
                MultiThreadStopReason::Watch { tid, kind, addr: watch.map_or(bp.addr, |w| w.addr) }
            }
        }
    }

    /// All-stop: pauses every vCPU that was let run, except `vcpu` (already stopped).
    fn stop_others(&mut self, vcpu: usize) {
        let others: Vec<usize> = self.stepping.keys().copied().filter(|&i| i != vcpu).collect();
        for index in others {
            let _ = self.machine.pause(index);
        }
        self.stepping.clear();
        self.in_flight.clear();
    }

    /// Ctrl-C: pauses what runs; the first stop that follows is reported as SIGINT.
    /// Returns the reply at once when nothing runs.
    pub(crate) fn interrupt(&mut self) -> Option<Reply> {
        if !self.running {
            // Already stopped: no pause event will come, answer at once.
            return Some(MultiThreadStopReason::SignalWithThread { tid: tid_of(0), signal: Signal::SIGINT });
        }
        self.interrupted = true;
        for &index in self.stepping.keys() {
            let _ = self.machine.pause(index);
        }
        None
    }
}
