//! What can be asked of a vCPU thread, and how it answers.

use super::{convert, RunState, Vcpu, VcpuError, VcpuSnapshot};
use inspect::regs::{Regs, SpecialRegs};
use kvm_bindings::{
    kvm_guest_debug, kvm_guest_debug_arch, kvm_msr_entry, Msrs, KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE,
    KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP,
};
use std::sync::mpsc::Sender;

/// The debug state a debugger wants on a vCPU (KVM_SET_GUEST_DEBUG without single-step,
/// which the vCPU adds itself while it steps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestDebug {
    /// Intercept `int3` (our software breakpoints).
    pub sw_breakpoints: bool,
    /// DR0-DR3 and DR7 for hardware breakpoints and watchpoints; `None` when unused.
    pub hw: Option<([u64; 4], u64)>,
}

/// DR7's L0/G0 enable bits; slot `i`'s are `DR7_ENABLE << (2 * i)`.
const DR7_ENABLE: u64 = 0b11;
/// DR7's R/W0 bits (`00`: instruction execution); slot `i`'s are at bit `16 + 4 * i`.
const DR7_RW: u64 = 0b11;

impl GuestDebug {
    /// The DR0-DR3 slots that are enabled execute breakpoints.
    fn execute_slots(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.hw.iter().flat_map(|(addrs, dr7)| {
            (0..4)
                .filter(move |i| dr7 & (DR7_ENABLE << (2 * i)) != 0 && (dr7 >> (16 + 4 * i)) & DR7_RW == 0)
                .map(move |i| (i, addrs[i]))
        })
    }

    /// Whether an enabled hardware execute breakpoint is at `rip`.
    pub fn executes_at(&self, rip: u64) -> bool {
        self.execute_slots().any(|(_, addr)| addr == rip)
    }

    /// This state with every hardware execute breakpoint disabled (data watchpoints stay).
    pub fn without_execute_breakpoints(self) -> Self {
        let slots: Vec<usize> = self.execute_slots().map(|(i, _)| i).collect();
        let hw = self
            .hw
            .map(|(addrs, dr7)| (addrs, slots.iter().fold(dr7, |dr7, i| dr7 & !(DR7_ENABLE << (2 * i)))));
        Self { hw, ..self }
    }

    /// The KVM structure for this state, single-stepping when `step`.
    pub fn to_kvm(self, step: bool, block_irq: bool) -> kvm_guest_debug {
        let mut control = 0;
        if self.sw_breakpoints {
            control |= KVM_GUESTDBG_USE_SW_BP;
        }
        let mut debugreg = [0u64; 8];
        if let Some((addrs, dr7)) = self.hw {
            control |= KVM_GUESTDBG_USE_HW_BP;
            debugreg[..4].copy_from_slice(&addrs);
            debugreg[7] = dr7;
        }
        if step {
            control |= KVM_GUESTDBG_SINGLESTEP;
            if block_irq {
                control |= KVM_GUESTDBG_BLOCKIRQ;
            }
        }
        if control != 0 {
            control |= KVM_GUESTDBG_ENABLE;
        }
        kvm_guest_debug { control, pad: 0, arch: kvm_guest_debug_arch { debugreg } }
    }
}

/// A request to a vCPU thread. Requests with a `Sender` are answered on it.
#[derive(Debug)]
pub enum VcpuRequest {
    /// Stop running guest code (reported as a `Stopped` event with `StopReason::Paused`).
    Pause,
    /// Run again.
    Resume,
    /// Execute this many instructions, then stop with `StopReason::Step`.
    Step(u64),
    /// Take a snapshot.
    Snapshot(Sender<VcpuSnapshot>),
    /// Replace the general registers.
    SetRegs(Regs, Sender<Result<(), VcpuError>>),
    /// Replace the special registers.
    SetSregs(SpecialRegs, Sender<Result<(), VcpuError>>),
    /// Read these MSRs.
    GetMsrs(Vec<u32>, Sender<Result<Vec<(u32, u64)>, VcpuError>>),
    /// Write these MSRs.
    SetMsrs(Vec<(u32, u64)>, Sender<Result<(), VcpuError>>),
    /// Read DR0-DR3, DR6, DR7.
    GetDebugRegs(Sender<Result<[u64; 6], VcpuError>>),
    /// Set the debugger's breakpoint configuration.
    SetGuestDebug(GuestDebug, Sender<Result<(), VcpuError>>),
    /// Read the vCPU's whole state (a paused or held vCPU only), after completing any
    /// port or MMIO access KVM still has pending.
    SaveState(super::state::SaveRequest, Sender<Result<super::state::VcpuState, VcpuError>>),
    /// Write a whole saved state back (a paused or held vCPU only: a checkpoint's rewind);
    /// answered with the MSRs KVM would not take.
    RestoreState(std::sync::Arc<super::state::VcpuState>, Sender<Result<Vec<String>, VcpuError>>),
    /// Leave `KVM_RUN` and wait for requests without reporting a stop (a snapshot of a
    /// running guest); answered once out of the guest.
    Hold(Sender<()>),
    /// End a [`VcpuRequest::Hold`].
    Release,
    /// End the thread.
    Terminate,
}

impl Vcpu {
    /// Handles one request; returns false when the thread should end.
    pub(super) fn handle_request(&mut self, req: VcpuRequest) -> bool {
        match req {
            VcpuRequest::Pause => {
                if self.state == RunState::Running {
                    self.stop(super::StopReason::Paused);
                }
            }
            // Whether a breakpoint at RIP is stepped over was decided when the vCPU stopped
            // (`StepOver`).
            VcpuRequest::Resume => {
                self.state = RunState::Running;
            }
            VcpuRequest::Step(n) => {
                self.steps_left = n.max(1);
                self.state = RunState::Running;
            }
            VcpuRequest::Snapshot(tx) => {
                let _ = tx.send(self.snapshot());
            }
            VcpuRequest::SetRegs(regs, tx) => {
                let r =
                    self.fd.set_regs(&convert::regs_to_kvm(&regs)).map_err(self.ioctl_err("KVM_SET_REGS"));
                let _ = tx.send(r);
            }
            VcpuRequest::SetSregs(sregs, tx) => {
                let r = self.fd.get_sregs().map_err(self.ioctl_err("KVM_GET_SREGS")).and_then(|base| {
                    self.fd
                        .set_sregs(&convert::sregs_to_kvm(&base, &sregs))
                        .map_err(self.ioctl_err("KVM_SET_SREGS"))
                });
                let _ = tx.send(r);
            }
            VcpuRequest::GetMsrs(indices, tx) => {
                let _ = tx.send(self.get_msrs(&indices));
            }
            VcpuRequest::SetMsrs(values, tx) => {
                let _ = tx.send(self.set_msrs(&values));
            }
            VcpuRequest::GetDebugRegs(tx) => {
                let r = self
                    .fd
                    .get_debug_regs()
                    .map_err(self.ioctl_err("KVM_GET_DEBUGREGS"))
                    .map(|d| [d.db[0], d.db[1], d.db[2], d.db[3], d.dr6, d.dr7]);
                let _ = tx.send(r);
            }
            VcpuRequest::SetGuestDebug(debug, tx) => {
                self.debug = debug;
                let _ = tx.send(self.apply_guest_debug());
            }
            VcpuRequest::SaveState(req, tx) => {
                let _ = tx.send(self.save_state(&req));
            }
            VcpuRequest::RestoreState(state, tx) => {
                let _ = tx.send(self.restore_state(&state));
            }
            VcpuRequest::Hold(tx) => {
                self.held = true;
                let _ = tx.send(());
            }
            VcpuRequest::Release => self.held = false,
            VcpuRequest::Terminate => return false,
        }
        true
    }

    /// Programs KVM_SET_GUEST_DEBUG from the debugger's wishes and our stepping state.
    pub(super) fn apply_guest_debug(&mut self) -> Result<(), VcpuError> {
        let step = self.steps_left > 0 || self.stepping_over.is_some() || self.stepping_off_hw;
        let debug = if self.stepping_off_hw { self.debug.without_execute_breakpoints() } else { self.debug };
        let wanted = debug.to_kvm(step, self.block_irq);
        if self.applied_debug.as_ref().map(|d| (d.control, d.arch.debugreg))
            == Some((wanted.control, wanted.arch.debugreg))
        {
            return Ok(());
        }
        self.fd.set_guest_debug(&wanted).map_err(self.ioctl_err("KVM_SET_GUEST_DEBUG"))?;
        self.applied_debug = Some(wanted);
        Ok(())
    }

    /// Readies a stopped vCPU for its state to be read or written: refused while it runs.
    /// KVM finishes an `in` or MMIO read only on the next `KVM_RUN`, so one run with
    /// `immediate_exit` set completes it without entering the guest (KVM's documented way
    /// before saving state); then nothing pending can land in saved or restored registers.
    fn complete_pending_io(&mut self) -> Result<(), VcpuError> {
        if self.state == RunState::Running && !self.held {
            return Err(VcpuError::Running(self.index));
        }
        self.fd.set_kvm_immediate_exit(1);
        let completed = self.fd.run().map(|_| ());
        self.fd.set_kvm_immediate_exit(0);
        match completed {
            Err(e) if e.errno() != libc::EINTR => {
                Err(VcpuError::Ioctl { index: self.index, op: "KVM_RUN (immediate exit)", source: e })
            }
            _ => Ok(()),
        }
    }

    /// The whole state, once any pending read is completed ([`Self::complete_pending_io`]).
    fn save_state(&mut self, req: &super::state::SaveRequest) -> Result<super::state::VcpuState, VcpuError> {
        self.complete_pending_io()?;
        super::state::save(&self.fd, req).map_err(|e| VcpuError::Ioctl {
            index: self.index,
            op: e.op,
            source: e.source,
        })
    }

    /// Writes `s` back into a stopped vCPU, once any pending read is completed (as before
    /// saving), so it cannot land in the restored registers. The guest's own DR0-DR7 come
    /// back with `s`; the debugger's breakpoints and watchpoints (KVM_SET_GUEST_DEBUG) are
    /// programmed again over them. Running on from the restored RIP steps over a breakpoint
    /// there, as after any stop; a sleep the guest asked for since is forgotten.
    fn restore_state(&mut self, s: &super::state::VcpuState) -> Result<Vec<String>, VcpuError> {
        self.complete_pending_io()?;
        let index = self.index;
        let not_taken = super::state::restore(&self.fd, s).map_err(|e| VcpuError::Ioctl {
            index,
            op: e.op,
            source: e.source,
        })?;
        self.applied_debug = None;
        self.apply_guest_debug()?;
        self.sleep_until = None;
        self.step_over = super::StepOver::IfStillAt(s.regs.rip);
        Ok(not_taken)
    }

    fn get_msrs(&self, indices: &[u32]) -> Result<Vec<(u32, u64)>, VcpuError> {
        let entries: Vec<kvm_msr_entry> =
            indices.iter().map(|&index| kvm_msr_entry { index, ..Default::default() }).collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| VcpuError::Gone(self.index))?;
        let n = self.fd.get_msrs(&mut msrs).map_err(self.ioctl_err("KVM_GET_MSRS"))?;
        Ok(msrs.as_slice()[..n].iter().map(|e| (e.index, e.data)).collect())
    }

    fn set_msrs(&self, values: &[(u32, u64)]) -> Result<(), VcpuError> {
        let entries: Vec<kvm_msr_entry> =
            values.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
        let msrs = Msrs::from_entries(&entries).map_err(|_| VcpuError::Gone(self.index))?;
        self.fd.set_msrs(&msrs).map_err(self.ioctl_err("KVM_SET_MSRS"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_breakpoints_are_found_and_lifted() {
        // DR0: execute at 0x1000 (L0|G0); DR2: write watchpoint at 0x2000 (L2|G2, R/W=01).
        let dr7 = (1 << 10) | 0b11 | (0b11 << 4) | (0b01 << 24);
        let debug = GuestDebug { sw_breakpoints: false, hw: Some(([0x1000, 0, 0x2000, 0], dr7)) };
        assert!(debug.executes_at(0x1000));
        assert!(!debug.executes_at(0x2000), "a watchpoint is not an execute breakpoint");
        assert!(!debug.executes_at(0), "DR1 and DR3 are off");
        let lifted = debug.without_execute_breakpoints();
        assert_eq!(lifted.hw, Some(([0x1000, 0, 0x2000, 0], (1 << 10) | (0b11 << 4) | (0b01 << 24))));
        assert!(!lifted.executes_at(0x1000));
        assert!(!GuestDebug::default().executes_at(0));
    }
}
