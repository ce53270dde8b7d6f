//! Steps the stub takes on gdb's behalf: after each single step of a vCPU, whether to
//! report to gdb or to step again. Range stepping (gdb's `vCont;r`, which `step` and `next`
//! use) and continuing with emulated watchpoints both come down to this loop, run next to
//! the vCPU instead of across the gdb connection.

/// What a vCPU does for gdb between a resume and the stop gdb hears about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stepping {
    /// Runs at full speed; the vCPU reports breakpoints itself.
    Free,
    /// One instruction, then report.
    Once,
    /// Instructions while RIP stays in `[start, end)` (gdb's range stepping).
    Range {
        /// First address of the range.
        start: u64,
        /// One past the last.
        end: u64,
    },
    /// A continue carried out one instruction at a time (watchpoints are emulated).
    Watching,
}

/// What to tell gdb after a step, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterStep {
    /// Step again without telling gdb.
    Again,
    /// The step gdb asked for is done.
    Done,
    /// RIP reached one of gdb's software breakpoints.
    SwBreak,
    /// RIP reached one of gdb's hardware (execute) breakpoints.
    HwBreak,
}

/// Where a breakpoint sits, as far as stepping is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakpointAt {
    /// Nothing at this address.
    None,
    /// A software breakpoint.
    Software,
    /// A hardware execute breakpoint.
    Hardware,
}

impl Stepping {
    /// Whether this vCPU is stepped (as opposed to running freely).
    pub fn steps(self) -> bool {
        self != Stepping::Free
    }

    /// The decision after a step that left the vCPU at `rip`. Stepping the next
    /// instruction would silently pass a breakpoint at `rip` (the VMM lifts an `int3` at
    /// RIP to step over it), so a breakpoint there ends any stepping that has not ended.
    pub fn after_step(self, rip: u64, breakpoint: BreakpointAt) -> AfterStep {
        let at_breakpoint = match breakpoint {
            BreakpointAt::None => None,
            BreakpointAt::Software => Some(AfterStep::SwBreak),
            BreakpointAt::Hardware => Some(AfterStep::HwBreak),
        };
        match self {
            Stepping::Free | Stepping::Once => AfterStep::Done,
            Stepping::Range { start, end } if (start..end).contains(&rip) => {
                at_breakpoint.unwrap_or(AfterStep::Again)
            }
            Stepping::Range { .. } => AfterStep::Done,
            Stepping::Watching => at_breakpoint.unwrap_or(AfterStep::Again),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        use BreakpointAt as B;
        assert_eq!(Stepping::Once.after_step(0x10, B::Software), AfterStep::Done);
        let range = Stepping::Range { start: 0x10, end: 0x20 };
        assert_eq!(range.after_step(0x14, B::None), AfterStep::Again);
        assert_eq!(range.after_step(0x14, B::Software), AfterStep::SwBreak);
        assert_eq!(range.after_step(0x20, B::None), AfterStep::Done);
        assert_eq!(range.after_step(0x0f, B::Hardware), AfterStep::Done);
        assert_eq!(Stepping::Watching.after_step(0x99, B::None), AfterStep::Again);
        assert_eq!(Stepping::Watching.after_step(0x99, B::Hardware), AfterStep::HwBreak);
        assert!(!Stepping::Free.steps() && Stepping::Watching.steps());
    }
}
