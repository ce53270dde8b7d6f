//! One `KVM_RUN` and the one function that dispatches and counts every exit.

use super::{RunState, StepOver, Vcpu};
use crate::vstate::bus::PioOutcome;
use inspect::exits::ExitKey;
use kvm_bindings::{
    kvm_run, KVM_INTERNAL_ERROR_EMULATION, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::VcpuExit;
use serde::Serialize;
use std::time::Instant;

/// `KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES`: the exit carries the bytes.
const EMULATION_FLAG_INSTRUCTION_BYTES: u64 = 1;
/// #DB.
const DB_VECTOR: u32 = 1;
/// #BP.
const BP_VECTOR: u32 = 3;
/// DR6.BS: the #DB came from single-stepping.
const DR6_BS: u64 = 1 << 14;

/// Why a vCPU stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// A pause request.
    Paused,
    /// A requested single step (or N steps) completed.
    Step,
    /// One of the debugger's software breakpoints.
    Breakpoint {
        /// Its guest-virtual address.
        addr: u64,
    },
    /// A hardware breakpoint or watchpoint in DR0-DR3 (index) fired.
    HwBreakpoint {
        /// Which debug register.
        index: u8,
        /// DR6 at the stop.
        dr6: u64,
    },
    /// The guest wrote its exit code to the exit port.
    GuestExit {
        /// The code.
        code: u32,
    },
    /// `KVM_EXIT_SHUTDOWN`: a triple fault (or a shutdown the guest asked for).
    Shutdown,
    /// The guest pulsed the reset line through the i8042 (a reboot): vmscope ends the VM
    /// there rather than rebooting it, as Firecracker does.
    Reset,
    /// `KVM_EXIT_SYSTEM_EVENT` (reset or power-off through PSCI-like paths).
    SystemEvent {
        /// The event type.
        kind: u32,
    },
    /// `KVM_EXIT_HLT` with no in-kernel irqchip to wake the vCPU.
    Halted,
    /// `KVM_EXIT_INTERNAL_ERROR`.
    InternalError(EmulationFailure),
    /// `KVM_EXIT_FAIL_ENTRY`: the hardware refused to enter the guest.
    FailEntry {
        /// Hardware entry-failure reason.
        reason: u64,
    },
    /// An exit vmscope does not handle.
    Unhandled {
        /// Its name.
        exit: String,
    },
    /// `KVM_RUN` itself failed.
    RunFailed {
        /// The error.
        error: String,
    },
}

impl StopReason {
    /// Whether this stop ends the guest (as opposed to a debugger stop).
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            StopReason::Paused
                | StopReason::Step
                | StopReason::Breakpoint { .. }
                | StopReason::HwBreakpoint { .. }
        )
    }
}

/// The details of `KVM_EXIT_INTERNAL_ERROR`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EmulationFailure {
    /// The suberror (1: emulation failure).
    pub suberror: u32,
    /// The instruction bytes KVM returned (with KVM_CAP_EXIT_ON_EMULATION_FAILURE).
    pub insn_bytes: Vec<u8>,
    /// The raw data words.
    pub data: Vec<u64>,
}

impl EmulationFailure {
    /// Whether KVM's instruction emulator gave up on an instruction.
    pub fn is_emulation(&self) -> bool {
        self.suberror == KVM_INTERNAL_ERROR_EMULATION
    }
}

/// What the run loop does after an exit.
pub(super) enum Next {
    Continue,
    Stop(super::StopReason),
    /// A port I/O exit while single-stepping: complete the instruction before counting the
    /// step (PVM can lose the debug exit that should follow an `out`).
    CompleteIo,
}

impl Vcpu {
    /// Runs the guest until the next exit and handles it; returns a stop reason if the vCPU
    /// must stop.
    pub(super) fn run_once(&mut self) -> Option<StopReason> {
        match std::mem::replace(&mut self.step_over, StepOver::No) {
            StepOver::No => {}
            StepOver::IfStillAt(rip) => self.begin_step_over_if_at_breakpoint(Some(rip)),
            StepOver::Yes => self.begin_step_over_if_at_breakpoint(None),
        }
        if let Err(e) = self.apply_guest_debug() {
            return Some(StopReason::RunFailed { error: e.to_string() });
        }
        let (key, next, ns) = self.run_and_dispatch();
        self.exits.record(key, ns);
        match next {
            Next::Continue => None,
            Next::Stop(r) => Some(r),
            Next::CompleteIo => {
                self.fd.set_kvm_immediate_exit(1);
                let (key, next, ns) = self.run_and_dispatch();
                self.fd.set_kvm_immediate_exit(0);
                self.exits.record(key, ns);
                match next {
                    Next::Stop(r) => Some(r),
                    // EINTR: the instruction completed without a debug exit.
                    Next::Continue | Next::CompleteIo => self.step_done(),
                }
            }
        }
    }

    /// One KVM_RUN; returns the exit key, what to do, and the nanoseconds spent in the VMM.
    fn run_and_dispatch(&mut self) -> (ExitKey, Next, u64) {
        let stepping = self.steps_left > 0 || self.stepping_over.is_some();
        let result = self.fd.run();
        let t0 = Instant::now();
        let (key, next) = match result {
            Ok(VcpuExit::IoOut(port, data)) => {
                let next = match self.bus.pio_write(port, data) {
                    PioOutcome::Exit(code) => Next::Stop(StopReason::GuestExit { code }),
                    PioOutcome::Reset => Next::Stop(StopReason::Reset),
                    _ if stepping => Next::CompleteIo,
                    PioOutcome::Sleep(d) => {
                        // The run loop waits it out (serving requests) before the next run;
                        // what the guest printed shows meanwhile.
                        self.bus.flush_output();
                        self.sleep_until = Some(Instant::now() + d);
                        Next::Continue
                    }
                    _ => Next::Continue,
                };
                (ExitKey::io_out(port), next)
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                // A guest that reads a device (a UART's status, its input) has ended a batch
                // of output: it may wait for an answer to what it printed.
                self.bus.flush_output();
                self.bus.pio_read(port, data);
                (ExitKey::io_in(port), if stepping { Next::CompleteIo } else { Next::Continue })
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                self.bus.flush_output();
                if !self.bus.mmio_read(addr, data) {
                    // Nothing there: reads of unbacked addresses return all ones.
                    data.fill(0xff);
                }
                (ExitKey::mmio_read(addr), if stepping { Next::CompleteIo } else { Next::Continue })
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                // Writes to unbacked addresses are dropped.
                self.bus.mmio_write(addr, data);
                (ExitKey::mmio_write(addr), if stepping { Next::CompleteIo } else { Next::Continue })
            }
            Ok(VcpuExit::Hlt) => (ExitKey::hlt(), Next::Stop(StopReason::Halted)),
            Ok(VcpuExit::Shutdown) => (ExitKey::shutdown(), Next::Stop(StopReason::Shutdown)),
            Ok(VcpuExit::Debug(arch)) => {
                (ExitKey::debug(), self.handle_debug_exit(arch.exception, arch.pc, arch.dr6))
            }
            Ok(VcpuExit::InternalError) => (
                ExitKey::internal_error(),
                Next::Stop(StopReason::InternalError(EmulationFailure::default())),
            ),
            Ok(VcpuExit::FailEntry(reason, _cpu)) => {
                (ExitKey::fail_entry(), Next::Stop(StopReason::FailEntry { reason }))
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                let next = match kind {
                    KVM_SYSTEM_EVENT_SHUTDOWN | KVM_SYSTEM_EVENT_RESET => {
                        Next::Stop(StopReason::SystemEvent { kind })
                    }
                    _ => Next::Stop(StopReason::SystemEvent { kind }),
                };
                (ExitKey::system_event(), next)
            }
            Ok(VcpuExit::Intr) => (ExitKey::intr(), Next::Continue),
            Ok(other) => {
                let name = format!("{other:?}");
                let name = name.split(['(', ' ', '{']).next().unwrap_or("unknown").to_string();
                (ExitKey::other(&name), Next::Stop(StopReason::Unhandled { exit: name }))
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.fd.set_kvm_immediate_exit(0);
                (ExitKey::intr(), Next::Continue)
            }
            Err(e) => {
                (ExitKey::other("run-failed"), Next::Stop(StopReason::RunFailed { error: e.to_string() }))
            }
        };
        // The internal-error details live in the kvm_run union; fetch them now that the
        // exit borrow has ended.
        let next = match next {
            Next::Stop(StopReason::InternalError(_)) => self.handle_internal_error(),
            other => other,
        };
        (key, next, t0.elapsed().as_nanos() as u64)
    }

    fn handle_internal_error(&mut self) -> Next {
        let run: &kvm_run = self.fd.get_kvm_run();
        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, for which KVM fills the
        // `internal` member of the union; it is plain integers, valid for any bit pattern.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let ndata = (internal.ndata as usize).min(internal.data.len());
        let data = internal.data[..ndata].to_vec();
        let mut insn_bytes = vec![];
        if internal.suberror == KVM_INTERNAL_ERROR_EMULATION
            && ndata >= 3
            && internal.data[0] & EMULATION_FLAG_INSTRUCTION_BYTES != 0
        {
            // Layout of `emulation_failure`: flags, then insn_size (u8) and 15 bytes.
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&internal.data[1].to_le_bytes());
            raw[8..].copy_from_slice(&internal.data[2].to_le_bytes());
            let size = usize::from(raw[0]).min(15);
            insn_bytes = raw[1..1 + size].to_vec();
        }
        let failure = EmulationFailure { suberror: internal.suberror, insn_bytes, data };
        self.handle_emulation_failure(failure)
    }

    /// A step finished (after a debug exit, or after completing port I/O).
    fn step_done(&mut self) -> Option<StopReason> {
        if let Some(addr) = self.stepping_over.take() {
            self.breakpoints.rearm(addr);
        }
        self.stepping_off_hw = false;
        if self.steps_left > 0 {
            self.steps_left -= 1;
            if self.steps_left == 0 {
                return Some(StopReason::Step);
            }
            self.step_over = StepOver::Yes;
        }
        None
    }

    fn handle_debug_exit(&mut self, exception: u32, pc: u64, dr6: u64) -> Next {
        match exception {
            BP_VECTOR if self.breakpoints.contains(pc) => Next::Stop(StopReason::Breakpoint { addr: pc }),
            BP_VECTOR => {
                // Not ours: the guest's own int3. Deliver it.
                self.inject_breakpoint_trap(pc);
                Next::Continue
            }
            DB_VECTOR if dr6 & 0xf != 0 && dr6 & DR6_BS == 0 && self.stepping_over.is_none() => {
                Next::Stop(StopReason::HwBreakpoint { index: (dr6 & 0xf).trailing_zeros() as u8, dr6 })
            }
            DB_VECTOR => match self.step_done() {
                Some(r) => Next::Stop(r),
                None if self.state == RunState::Running => Next::Continue,
                None => Next::Continue,
            },
            _ => Next::Continue,
        }
    }
}
