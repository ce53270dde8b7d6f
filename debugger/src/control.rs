//! Run control that never blocks: [`Debugger::start`] sets the guest going (continue, one
//! step, the step-over, run to an address) and returns a [`Run`]; [`Debugger::poll`]
//! takes the next stop when there is one, and finishes the run (its temporary breakpoint
//! goes) at the first stop that is not a pause, whatever stopped it; [`Debugger::cancel`]
//! pauses the guest and finishes it. A frontend that must keep drawing (the TUI) polls; the script session's
//! `step`, `next` and `cont` are a start and a blocking wait ([`Debugger::await_stop`]).

use crate::{Debugger, DebuggerError};
use inspect::disasm;
use inspect::Gva;
use std::time::Duration;
use vmm::machine::Outcome;
use vmm::vstate::vcpu::{StopReason, VcpuEventKind, VcpuSnapshot};

/// The longest x86 instruction, in bytes.
pub(crate) const MAX_INSTRUCTION: usize = 15;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Go {
    /// Every vCPU runs until something stops one.
    Cont,
    /// The session's vCPU runs one instruction.
    Step,
    /// The step-over: over a `call` (or a `rep`-prefixed string instruction) every vCPU
    /// runs to the instruction after it; any other instruction is one step.
    Next,
    /// Every vCPU runs until one reaches this address (a temporary breakpoint).
    RunTo(u64),
}

/// A run that [`Debugger::start`] started and that has not stopped yet.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a run is finished by poll, await_stop or cancel, which remove its temporary breakpoint"]
pub struct Run {
    /// What was asked for.
    pub go: Go,
    /// The breakpoint the run planted (step-over, run-to), unless one was already there.
    pub temporary: Option<u64>,
    /// Every vCPU runs (not one single step).
    pub resumed: bool,
}

/// A vCPU stopped.
#[derive(Debug)]
pub struct StopEvent {
    /// Which vCPU.
    pub vcpu: usize,
    /// What stopped it: a breakpoint, a step, a pause, the guest's end.
    pub reason: StopReason,
    /// Its state at the stop.
    pub snapshot: Box<VcpuSnapshot>,
    /// How the guest ended, when the stop is its end.
    pub ended: Option<Outcome>,
}

impl Debugger<'_> {
    /// Sets the guest going and returns at once.
    pub fn start(&self, go: Go) -> Result<Run, DebuggerError> {
        match go {
            Go::Cont => self.machine.resume_all()?,
            Go::Step => self.machine.step(self.vcpu, 1)?,
            Go::Next => return self.start_step_over(),
            Go::RunTo(addr) => return self.run_with_breakpoint(go, addr),
        }
        Ok(Run { go, temporary: None, resumed: go == Go::Cont })
    }

    fn start_step_over(&self) -> Result<Run, DebuggerError> {
        let snap = self.snapshot()?;
        let code = self.machine.read_virt(self.vcpu, Gva(snap.regs.rip), MAX_INSTRUCTION)?;
        match disasm::step_over_target(&code, snap.regs.rip, snap.sregs.cpu_mode()) {
            Some(after) => self.run_with_breakpoint(Go::Next, after),
            None => {
                self.machine.step(self.vcpu, 1)?;
                Ok(Run { go: Go::Next, temporary: None, resumed: false })
            }
        }
    }

    /// Plants a temporary breakpoint at `addr` (unless one is there) and resumes every vCPU.
    fn run_with_breakpoint(&self, go: Go, addr: u64) -> Result<Run, DebuggerError> {
        let temporary = (!self.machine.breakpoints().contains(addr)).then_some(addr);
        if let Some(t) = temporary {
            self.machine.insert_sw_breakpoint(Gva(t))?;
        }
        let run = Run { go, temporary, resumed: true };
        if let Err(e) = self.machine.resume_all() {
            self.finish(run);
            return Err(e.into());
        }
        Ok(run)
    }

    /// The next stop of any vCPU, waiting at most `wait` (`Duration::ZERO`: only what has
    /// arrived). The first stop that is not a pause finishes `run`, if there is one, and
    /// leaves `None` there (a pause can be the late answer to an earlier one; a frontend
    /// that pauses a run calls [`Debugger::cancel`]). Pauses are returned too: a frontend
    /// sees every vCPU come to rest.
    pub fn poll(&self, run: &mut Option<Run>, wait: Duration) -> Option<StopEvent> {
        loop {
            let event = self.machine.next_event(wait)?;
            let VcpuEventKind::Stopped { reason, snapshot } = event.kind else { continue };
            if reason != StopReason::Paused {
                if let Some(r) = run.take() {
                    self.finish(r);
                }
            }
            let ended = Outcome::from_stop(&reason, &snapshot);
            return Some(StopEvent { vcpu: event.vcpu, reason, snapshot, ended });
        }
    }

    /// Stops a run: every vCPU is paused and the run's temporary breakpoint removed.
    pub fn cancel(&self, run: Option<Run>) {
        self.machine.pause_all();
        if let Some(r) = run {
            self.finish(r);
        }
    }

    /// Removes what the run planted.
    pub(crate) fn finish(&self, run: Run) {
        if let Some(t) = run.temporary {
            let _ = self.machine.remove_sw_breakpoint(Gva(t));
        }
    }
}
