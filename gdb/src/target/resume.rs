//! gdb's resume actions (`vCont;c`, `;s`, `;r`) become vCPU requests: a continue is
//! `VcpuRequest::Resume`, unless watchpoints are emulated on this host, in which case it
//! becomes a chain of single steps the stub checks one by one (`step.rs`, `watch.rs`); a
//! step or a range step is `VcpuRequest::Step(1)`, repeated by the stub while the range
//! lasts.

use super::VmTarget;
use crate::step::Stepping;
use gdbstub::common::{Signal, Tid};
use gdbstub::target::ext::base::multithread::{
    MultiThreadRangeStepping, MultiThreadRangeSteppingOps, MultiThreadResume, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use std::time::Duration;
use vmm::vstate::vcpu::{StopReason, VcpuEventKind};

/// What gdb asked a vCPU to do at the next resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run.
    Continue,
    /// One instruction.
    Step,
    /// Instructions while RIP stays in `[start, end)`.
    Range(u64, u64),
}

impl VmTarget<'_> {
    /// Whether watchpoints must be emulated by stepping: PVM's instruction emulator, which
    /// runs CPL0 guest code there, does not check the debug registers on data accesses.
    pub(crate) fn emulates_watchpoints(&self) -> bool {
        !self.watches.is_empty() && self.machine.host() == inspect::HostKind::Pvm
    }

    /// Sets vCPU `index` going as `stepping` says.
    fn start(&mut self, index: usize, stepping: Stepping) -> Result<(), String> {
        self.stepping.insert(index, stepping);
        if stepping.steps() {
            self.step_once(index)
        } else {
            self.machine.resume(index).map_err(|e| e.to_string())
        }
    }

    /// Steps vCPU `index` by one instruction, first noting which memory that instruction
    /// touches when watchpoints are emulated.
    pub(crate) fn step_once(&mut self, index: usize) -> Result<(), String> {
        if self.emulates_watchpoints() {
            let (regs, sregs) = match self.cache.snapshot(self.machine, index) {
                Ok(s) => (s.regs, s.sregs),
                Err(e) => return Err(e.to_string()),
            };
            if sregs.cpl() == 3 && self.stepping.get(&index) == Some(&Stepping::Watching) {
                // PVM hands a CPL3 single-step trap to the guest, not to vmscope: let the
                // vCPU run; the watchpoints cannot fire until gdb stops it again.
                eprintln!(
                    "vmscope: vCPU {index} runs CPL3 code at {:#x}, which PVM cannot single-step; \
                     watchpoints are off until it stops",
                    regs.rip
                );
                self.stepping.insert(index, Stepping::Free);
                self.cache.forget(index);
                return self.machine.resume(index).map_err(|e| e.to_string());
            }
            let accesses = debugger::watch::accesses_at_rip(self.machine, &regs, &sregs);
            self.in_flight.insert(index, accesses);
        }
        self.cache.forget(index);
        self.machine.step(index, 1).map_err(|e| e.to_string())
    }

    /// Stop events that arrived while gdb looked at the stopped guest: the all-stop pauses
    /// are dropped; a breakpoint another vCPU hit meanwhile (if gdb still has it), or the
    /// guest's end, is kept to be reported before anything runs again.
    fn collect_raced_stops(&mut self) {
        while let Some(event) = self.machine.next_event(Duration::ZERO) {
            let VcpuEventKind::Stopped { reason, snapshot } = event.kind else { continue };
            let keep = match &reason {
                StopReason::Paused | StopReason::Step => false,
                StopReason::Breakpoint { addr } => self.machine.breakpoints().contains(*addr),
                _ => true,
            };
            if keep {
                self.pending.push_back((event.vcpu, reason, snapshot));
            }
        }
    }
}

impl MultiThreadResume for VmTarget<'_> {
    fn resume(&mut self) -> Result<(), Self::Error> {
        self.running = true;
        self.stepping.clear();
        self.in_flight.clear();
        if matches!(self.end, Some(vmm::machine::Outcome::Fault { .. })) {
            // Nothing can run after a fault: gdb hears that the process is gone.
            self.terminate = true;
            return Ok(());
        }
        self.collect_raced_stops();
        if !self.pending.is_empty() {
            return Ok(());
        }
        self.ever_resumed = true;
        // vCPUs that never run guest code (an ELF guest's parked APs) stay parked.
        for index in 0..self.machine.runnable_vcpus() {
            let stepping = match self.actions.get(&index) {
                Some(Action::Step) => Stepping::Once,
                Some(&Action::Range(start, end)) if start < end => Stepping::Range { start, end },
                Some(Action::Range(_, _)) => Stepping::Once,
                // gdbstub's contract: the default action is continue, unless gdb asked for
                // scheduler locking.
                None if self.scheduler_locked => continue,
                Some(Action::Continue) | None if self.emulates_watchpoints() => Stepping::Watching,
                Some(Action::Continue) | None => Stepping::Free,
            };
            self.start(index, stepping)?;
        }
        self.cache.clear();
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.actions.clear();
        self.scheduler_locked = false;
        Ok(())
    }

    fn set_resume_action_continue(&mut self, tid: Tid, signal: Option<Signal>) -> Result<(), Self::Error> {
        ignore_signal(signal);
        self.actions.insert(Self::vcpu_of(tid), Action::Continue);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_range_step(&mut self) -> Option<MultiThreadRangeSteppingOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

/// gdb hands back the signal of the last stop when it resumes (SIGSEGV after a fault, by
/// default): a vCPU has no signals to deliver, and after a fault nothing runs anyway.
fn ignore_signal(signal: Option<Signal>) {
    if let Some(s) = signal {
        tracing::debug!("gdb resumes with {s}; vCPUs take no signals, ignored");
    }
}

impl MultiThreadSingleStep for VmTarget<'_> {
    fn set_resume_action_step(&mut self, tid: Tid, signal: Option<Signal>) -> Result<(), Self::Error> {
        ignore_signal(signal);
        self.actions.insert(Self::vcpu_of(tid), Action::Step);
        Ok(())
    }
}

impl MultiThreadRangeStepping for VmTarget<'_> {
    fn set_resume_action_range_step(&mut self, tid: Tid, start: u64, end: u64) -> Result<(), Self::Error> {
        self.actions.insert(Self::vcpu_of(tid), Action::Range(start, end));
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for VmTarget<'_> {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        self.scheduler_locked = true;
        Ok(())
    }
}
