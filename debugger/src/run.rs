//! Run control: `step N`, `next` (the step-over), `cont` (with software watchpoints, a
//! single-stepping `cont`), and the wait for the next stop that each of them ends with.
//! A stop is typed ([`Stop`]); the software-watchpoint loop reads its reason and RIP
//! directly.

use crate::reply::{Reply, Stop, WatchHit};
use crate::watch::{self, Watch};
use crate::{Debugger, DebuggerError};
use inspect::disasm;
use inspect::paging::PagingContext;
use inspect::Gva;
use vmm::machine::Outcome;
use vmm::vstate::vcpu::{StopReason, VcpuEventKind};

/// The longest x86 instruction, in bytes.
const MAX_INSTRUCTION: usize = 15;

/// A step-over that [`Debugger::start_step_over`] started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOver {
    /// The instruction calls (or repeats): every vCPU runs to the instruction after it.
    OverCall {
        /// The breakpoint planted there, unless one was already set.
        temporary: Option<u64>,
    },
    /// Any other instruction: one single step.
    Stepped,
}

impl Debugger<'_> {
    pub(crate) fn step(&self, count: u64) -> Result<Reply, DebuggerError> {
        self.machine.step(self.vcpu, count)?;
        Ok(Reply::Stop(Box::new(self.await_stop()?)))
    }

    /// Starts a step-over without waiting: over a `call` (or `rep`-prefixed string
    /// instruction) by a temporary breakpoint after it and resuming every vCPU; any other
    /// instruction is single-stepped. The caller waits for the stop (`next` blocks in
    /// [`Debugger::await_stop`], the TUI polls) and then calls
    /// [`Debugger::finish_step_over`].
    pub fn start_step_over(&self) -> Result<StepOver, DebuggerError> {
        let snap = self.snapshot()?;
        let code = self.machine.read_virt(self.vcpu, Gva(snap.regs.rip), MAX_INSTRUCTION)?;
        let Some(after) = disasm::step_over_target(&code, snap.regs.rip, snap.sregs.cpu_mode()) else {
            self.machine.step(self.vcpu, 1)?;
            return Ok(StepOver::Stepped);
        };
        let temporary = (!self.machine.breakpoints().contains(after)).then_some(after);
        if let Some(t) = temporary {
            self.machine.insert_sw_breakpoint(Gva(t))?;
        }
        let over = StepOver::OverCall { temporary };
        if let Err(e) = self.machine.resume_all() {
            self.finish_step_over(&over);
            return Err(e.into());
        }
        Ok(over)
    }

    /// Ends a step-over once its stop came (whatever stop it was): removes the temporary
    /// breakpoint it planted.
    pub fn finish_step_over(&self, over: &StepOver) {
        if let StepOver::OverCall { temporary: Some(t) } = over {
            let _ = self.machine.remove_sw_breakpoint(Gva(*t));
        }
    }

    /// `next`: a step-over that waits for its stop.
    pub(crate) fn step_over(&self) -> Result<Reply, DebuggerError> {
        let over = self.start_step_over()?;
        let stop = self.await_stop();
        self.finish_step_over(&over);
        Ok(Reply::Stop(Box::new(stop?)))
    }

    pub(crate) fn cont(&self) -> Result<Reply, DebuggerError> {
        if !self.watches.borrow().is_empty() {
            return self.cont_watching();
        }
        self.machine.resume_all()?;
        Ok(Reply::Stop(Box::new(self.await_stop()?)))
    }

    /// `cont` with software watchpoints: step one instruction at a time; before each, work
    /// out what it will write, and stop after it if that overlaps a watched range (a trap
    /// after the instruction, as a debug register gives), at a breakpoint address, or
    /// when the guest stops for another reason.
    fn cont_watching(&self) -> Result<Reply, DebuggerError> {
        loop {
            let hit = self.next_watch_hit()?;
            let old = hit.map(|w| self.read_watched(&w));
            self.machine.step(self.vcpu, 1)?;
            let stop = self.await_stop()?;
            if stop.ended.is_some() || stop.reason != StopReason::Step {
                return Ok(Reply::Stop(Box::new(stop)));
            }
            if let (Some(w), Some(old)) = (hit, old) {
                let new = self.read_watched(&w);
                let symbol = self.symbol_of(w.addr);
                let hit = WatchHit { watchpoint: w.addr, old, new, stop, symbol };
                return Ok(Reply::WatchHit(Box::new(hit)));
            }
            if self.machine.breakpoints().contains(stop.rip) {
                return Ok(Reply::Stop(Box::new(stop)));
            }
        }
    }

    /// The watchpoint the instruction at RIP will fire, if any.
    fn next_watch_hit(&self) -> Result<Option<Watch>, DebuggerError> {
        let snap = self.snapshot()?;
        let ctx = PagingContext::from_sregs(&snap.sregs);
        let code = self.machine.read_virt_in(&ctx, Gva(snap.regs.rip), MAX_INSTRUCTION);
        let bitness = snap.sregs.cpu_mode().bitness();
        let accesses = watch::accesses(&code, snap.regs.rip, bitness, &snap.regs, &snap.sregs);
        Ok(watch::first_hit(self.watches.borrow().watches(), &accesses).copied())
    }

    /// A watched range's value now (bytes that cannot be read count as zero).
    fn read_watched(&self, w: &Watch) -> u128 {
        let len = usize::try_from(w.len).unwrap_or(usize::MAX);
        self.machine.read_virt(self.vcpu, Gva(w.addr), len).map(|b| watch::little_endian(&b)).unwrap_or(0)
    }

    /// Waits for the next stop of any vCPU (pauses are not stops), pauses the others, and
    /// describes it; a vCPU that does not stop within the time limit is paused and named.
    pub fn await_stop(&self) -> Result<Stop, DebuggerError> {
        loop {
            let Some(event) = self.machine.next_event(self.stop_timeout) else {
                self.machine.pause_all();
                return Err(DebuggerError::NoStop { vcpu: self.vcpu, limit: self.stop_timeout });
            };
            let VcpuEventKind::Stopped { reason, snapshot } = event.kind else { continue };
            if matches!(reason, StopReason::Paused) {
                continue;
            }
            self.machine.pause_all();
            let rip = snapshot.regs.rip;
            let instruction = self
                .machine
                .read_virt(event.vcpu, Gva(rip), MAX_INSTRUCTION)
                .map(|code| disasm::decode_one(&code, rip, snapshot.sregs.cpu_mode()).text)
                .unwrap_or_default();
            let ended = Outcome::from_stop(&reason, &snapshot);
            let symbol = self.symbol_of(rip);
            return Ok(Stop { vcpu: event.vcpu, reason, rip, symbol, instruction, ended });
        }
    }
}
