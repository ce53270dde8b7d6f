//! What a vCPU does about `int3` and emulation failures: our own breakpoints stop it, the
//! guest's own `int3` is delivered to it, and — with the PVM fix-ups on — the instructions
//! PVM's emulator cannot run but a guest runs on purpose (`int3`, `fwait`) are answered by
//! the VMM. Everything else stops the vCPU with the failure for the report.

use super::exit::{EmulationFailure, Next, StopReason};
use super::Vcpu;

/// `int3`.
const INT3: u8 = 0xcc;
/// `fwait`.
const FWAIT: u8 = 0x9b;

/// Which emulation failures the VMM answers itself (on for the Linux guest on PVM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmulationFixups {
    /// Turn an `int3` the emulator cannot run into an injected #BP.
    pub int3_to_bp: bool,
    /// Skip `fwait` (a no-op without pending x87 exceptions).
    pub skip_fwait: bool,
}

impl Vcpu {
    pub(super) fn handle_emulation_failure(&mut self, failure: EmulationFailure) -> Next {
        let Ok(regs) = self.fd.get_regs() else {
            return Next::Stop(StopReason::InternalError(failure));
        };
        let rip = regs.rip;
        if failure.is_emulation() {
            // On PVM, an int3 at CPL0 reaches us as an emulation failure, not a debug exit.
            if self.breakpoints.contains(rip) {
                return Next::Stop(StopReason::Breakpoint { addr: rip });
            }
            match failure.insn_bytes.first().copied() {
                Some(INT3) if self.fixups.int3_to_bp => {
                    self.inject_breakpoint_trap(rip);
                    return Next::Continue;
                }
                Some(FWAIT) if self.fixups.skip_fwait => {
                    let mut r = regs;
                    r.rip += 1;
                    if self.fd.set_regs(&r).is_ok() {
                        return Next::Continue;
                    }
                }
                _ => {}
            }
        }
        Next::Stop(StopReason::InternalError(failure))
    }

    /// Delivers #BP to the guest as if the `int3` at `pc` had trapped (RIP after it).
    pub(super) fn inject_breakpoint_trap(&mut self, pc: u64) {
        let result = self.fd.get_regs().and_then(|mut r| {
            r.rip = pc.wrapping_add(1);
            self.fd.set_regs(&r)?;
            let mut events = self.fd.get_vcpu_events()?;
            events.exception.injected = 1;
            events.exception.nr = 3;
            events.exception.has_error_code = 0;
            self.fd.set_vcpu_events(&events)
        });
        if let Err(e) = result {
            tracing::warn!("vCPU {}: cannot inject #BP at {pc:#x}: {e}", self.index);
        }
    }

    /// When the vCPU is about to run on from one of our breakpoints, lift it for one step:
    /// only if RIP is `still_at` (where the vCPU stopped), or wherever RIP is for `None`.
    /// A software breakpoint's `int3` is taken out of memory; a hardware execute breakpoint
    /// is switched off in DR7 for that step.
    pub(super) fn begin_step_over_if_at_breakpoint(&mut self, still_at: Option<u64>) {
        if (self.breakpoints.is_empty() && self.debug.hw.is_none())
            || self.stepping_over.is_some()
            || self.stepping_off_hw
        {
            return;
        }
        let Ok(regs) = self.fd.get_regs() else { return };
        if still_at.is_some_and(|at| at != regs.rip) {
            return;
        }
        if self.breakpoints.contains(regs.rip) && self.breakpoints.disarm(regs.rip) {
            self.stepping_over = Some(regs.rip);
        }
        self.stepping_off_hw = self.debug.executes_at(regs.rip);
    }
}
