//! Run control: `step N`, `next` (the step-over), `cont` (with software watchpoints, a
//! single-stepping `cont`), and the wait for the next stop that each of them ends with.
//! A stop is typed ([`Stop`]); the software-watchpoint loop reads its reason and RIP
//! directly.

use crate::control::{Go, Run, MAX_INSTRUCTION};
use crate::reply::{Reply, Stop, WatchHit};
use crate::watch::{self, Watch};
use crate::{Debugger, DebuggerError};
use inspect::disasm;
use inspect::Gva;
use vmm::vstate::vcpu::StopReason;

impl Debugger<'_> {
    pub(crate) fn step(&self, count: u64) -> Result<Reply, DebuggerError> {
        self.machine.step(self.vcpu, count)?;
        Ok(Reply::Stop(Box::new(self.await_stop(None)?)))
    }

    /// `next`: a step-over that waits for its stop.
    pub(crate) fn step_over(&self) -> Result<Reply, DebuggerError> {
        let run = self.start(Go::Next)?;
        Ok(Reply::Stop(Box::new(self.await_stop(Some(run))?)))
    }

    pub(crate) fn cont(&self) -> Result<Reply, DebuggerError> {
        if !self.watches.borrow().is_empty() {
            return self.cont_watching();
        }
        let run = self.start(Go::Cont)?;
        Ok(Reply::Stop(Box::new(self.await_stop(Some(run))?)))
    }

    /// `cont` with software watchpoints: step one instruction at a time; before each, work
    /// out what it will write, and stop after it if that overlaps a watched range (a trap
    /// after the instruction, as a debug register gives), at a breakpoint address, or
    /// when the guest stops for another reason.
    fn cont_watching(&self) -> Result<Reply, DebuggerError> {
        loop {
            let hit = self.next_watch_hit()?;
            let old = hit.map(|w| self.read_watched(&w));
            let run = self.start(Go::Step)?;
            let stop = self.await_stop(Some(run))?;
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
        let accesses = watch::accesses_at_rip(self.machine, &snap.regs, &snap.sregs);
        Ok(watch::first_hit(self.watches.borrow().watches(), &accesses).copied())
    }

    /// A watched range's value now (bytes that cannot be read count as zero).
    fn read_watched(&self, w: &Watch) -> u128 {
        let len = usize::try_from(w.len).unwrap_or(usize::MAX);
        self.machine.read_virt(self.vcpu, Gva(w.addr), len).map(|b| watch::little_endian(&b)).unwrap_or(0)
    }

    /// Waits for the next stop of any vCPU (pauses are not stops), which finishes `run`,
    /// pauses the others (all-stop), and describes it. A guest that does not stop within
    /// the time limit is paused, the run cancelled, and the vCPU named.
    pub fn await_stop(&self, run: Option<Run>) -> Result<Stop, DebuggerError> {
        let mut run = run;
        loop {
            let Some(event) = self.poll(&mut run, self.stop_timeout) else {
                self.cancel(run);
                return Err(DebuggerError::NoStop { vcpu: self.vcpu, limit: self.stop_timeout });
            };
            if event.reason == StopReason::Paused {
                continue;
            }
            self.machine.pause_all();
            let rip = event.snapshot.regs.rip;
            let instruction = self
                .machine
                .read_virt(event.vcpu, Gva(rip), MAX_INSTRUCTION)
                .map(|code| disasm::decode_one(&code, rip, event.snapshot.sregs.cpu_mode()).text)
                .unwrap_or_default();
            let symbol = self.symbol_of(rip);
            let (vcpu, reason, ended) = (event.vcpu, event.reason, event.ended);
            return Ok(Stop { vcpu, reason, rip, symbol, instruction, ended });
        }
    }
}
