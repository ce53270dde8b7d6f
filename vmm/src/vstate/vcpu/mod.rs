//! A vCPU: one thread that owns its `VcpuFd` and runs `KVM_RUN` in a loop. Everyone else
//! talks to it through a [`VcpuHandle`]: requests go in over a channel (followed by a kick
//! that ends a running `KVM_RUN`), and stop events come out on the VM's event channel.
//! See vmm/DESIGN.md for the sequence.

pub mod convert;
mod exit;
mod fixup;
pub mod kick;
mod request;
pub mod state;

pub use exit::{EmulationFailure, StopReason};
pub use fixup::EmulationFixups;
pub use request::{GuestDebug, VcpuRequest};

use crate::breakpoints::Breakpoints;
use crate::vstate::bus::GuestBus;
use inspect::exits::ExitStats;
use inspect::regs::{Regs, SpecialRegs};
use inspect::HostKind;
use kvm_ioctls::VcpuFd;
use serde::Serialize;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vmm_sys_util::signal::Killable;

/// Errors from talking to a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// The vCPU thread has ended.
    #[error("vCPU {0} is gone")]
    Gone(usize),
    /// The vCPU did not answer in time.
    #[error("vCPU {0} did not answer within {1:?}")]
    Timeout(usize, Duration),
    /// A KVM ioctl on the vCPU failed.
    #[error("{op} on vCPU {index} failed")]
    Ioctl {
        /// Which vCPU.
        index: usize,
        /// The ioctl.
        op: &'static str,
        /// KVM's errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The thread could not be started.
    #[error("cannot start the thread of vCPU {0}")]
    Spawn(usize, #[source] std::io::Error),
    /// The request needs a stopped vCPU.
    #[error("vCPU {0} is running: pause it (or stop at a breakpoint) first")]
    Running(usize),
}

/// Whether a vCPU is executing guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// In or about to enter `KVM_RUN`.
    Running,
    /// Stopped, waiting for requests.
    Paused,
}

/// A consistent picture of one vCPU, taken on its own thread between two `KVM_RUN`s.
#[derive(Clone, Debug, Serialize)]
pub struct VcpuSnapshot {
    /// The vCPU index (0-based).
    pub index: usize,
    /// Running or paused.
    pub state: RunState,
    /// General registers.
    pub regs: Regs,
    /// Segment, control and system registers.
    pub sregs: SpecialRegs,
    /// Exit counts of this vCPU so far.
    pub exits: ExitStats,
    /// The host kind these numbers come from.
    pub host: HostKind,
}

/// Something a vCPU reports on the VM's event channel.
#[derive(Debug)]
pub struct VcpuEvent {
    /// Which vCPU.
    pub vcpu: usize,
    /// What happened.
    pub kind: VcpuEventKind,
}

/// What happened to a vCPU.
#[derive(Debug)]
pub enum VcpuEventKind {
    /// It stopped and waits for requests.
    Stopped {
        /// What stopped it (a pause, a step, a breakpoint, the guest's exit, a fault).
        reason: StopReason,
        /// Its state at the stop.
        snapshot: Box<VcpuSnapshot>,
    },
    /// Its thread ended.
    Ended,
}

/// The part of a vCPU that lives on its thread.
pub struct Vcpu {
    index: usize,
    fd: VcpuFd,
    bus: Arc<dyn GuestBus>,
    breakpoints: Arc<Breakpoints>,
    host: HostKind,
    state: RunState,
    /// Single steps still to do before reporting a stop; 0 when not stepping.
    steps_left: u64,
    /// Set while stepping over one of our own software breakpoints.
    stepping_over: Option<u64>,
    /// Set while stepping off a hardware execute breakpoint at RIP, with DR7's execute
    /// slots off for that step (otherwise the breakpoint fires again before the
    /// instruction runs).
    stepping_off_hw: bool,
    /// Whether the next run first lifts one of our breakpoints at RIP for a step.
    step_over: StepOver,
    debug: GuestDebug,
    /// What KVM_SET_GUEST_DEBUG was last given.
    applied_debug: Option<kvm_bindings::kvm_guest_debug>,
    /// Whether the host offers KVM_GUESTDBG_BLOCKIRQ.
    block_irq: bool,
    fixups: EmulationFixups,
    exits: ExitStats,
    events: Sender<VcpuEvent>,
    /// Held by [`VcpuRequest::Hold`] (for a snapshot of a running guest): out of `KVM_RUN`
    /// and answering requests, without a stop event, until [`VcpuRequest::Release`].
    held: bool,
    /// Until when the guest asked to sleep (`vmscope_abi::PORT_SLEEP`): the thread waits for
    /// requests instead of entering the guest. A pause keeps it; a step ends it.
    sleep_until: Option<Instant>,
}

/// Whether a vCPU that runs on from where it is first steps over one of our software or
/// hardware execute breakpoints at RIP. Only a vCPU that *stopped* at RIP does: the breakpoint there was
/// just reported, or the debugger saw the vCPU there (after a step or a pause) before it
/// placed it, as gdb steps over a breakpoint at its thread's stop PC. A vCPU held before
/// its first instruction has not stopped anywhere, so a breakpoint on the entry point is
/// hit before the entry instruction runs (gdb's `break _start` + `run`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepOver {
    /// No: the vCPU has not stopped since it last ran, or never stopped at all.
    No,
    /// If RIP is still this address, where the vCPU stopped (a register write that moved
    /// RIP elsewhere makes a breakpoint at the new RIP hit).
    IfStillAt(u64),
    /// Yes: between two steps of a multi-step request.
    Yes,
}

/// How a vCPU thread is set up.
#[derive(Clone, Copy, Debug, Default)]
pub struct VcpuOptions {
    /// Start paused (for `--gdb-wait` and `--break`).
    pub start_paused: bool,
    /// Whether KVM_GUESTDBG_BLOCKIRQ may be used while stepping.
    pub block_irq: bool,
    /// Emulation failures the VMM answers itself.
    pub fixups: EmulationFixups,
    /// The vCPU's state was restored from a snapshot taken while it was stopped at its
    /// RIP, so running on first steps over a breakpoint there, as after any stop.
    pub restored: bool,
}

impl Vcpu {
    /// Wraps a configured vCPU fd. It starts paused when `start_paused`.
    pub fn new(
        index: usize,
        fd: VcpuFd,
        bus: Arc<dyn GuestBus>,
        breakpoints: Arc<Breakpoints>,
        events: Sender<VcpuEvent>,
        options: VcpuOptions,
    ) -> Self {
        let step_over = match fd.get_regs() {
            Ok(r) if options.restored => StepOver::IfStillAt(r.rip),
            _ => StepOver::No,
        };
        Self {
            index,
            fd,
            bus,
            breakpoints,
            host: crate::host::host_kind(),
            state: if options.start_paused { RunState::Paused } else { RunState::Running },
            steps_left: 0,
            stepping_over: None,
            stepping_off_hw: false,
            step_over,
            debug: GuestDebug::default(),
            applied_debug: None,
            block_irq: options.block_irq,
            fixups: options.fixups,
            exits: ExitStats::default(),
            events,
            held: false,
            sleep_until: None,
        }
    }

    /// Starts the vCPU's thread.
    pub fn spawn(self) -> Result<VcpuHandle, VcpuError> {
        kick::install_handler().map_err(|e| VcpuError::Spawn(self.index, e))?;
        let index = self.index;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("vcpu{index}"))
            .spawn(move || self.run(rx))
            .map_err(|e| VcpuError::Spawn(index, e))?;
        Ok(VcpuHandle { index, requests: tx, thread: Some(thread) })
    }

    fn run(mut self, requests: Receiver<VcpuRequest>) {
        kick::register_current_thread(self.fd.get_kvm_run());
        crate::seccomp::enter(crate::seccomp::Thread::Vcpu);
        let events = self.events.clone();
        'outer: loop {
            loop {
                let req = if self.state == RunState::Paused || self.held {
                    match requests.recv() {
                        Ok(r) => r,
                        Err(_) => break 'outer,
                    }
                } else if let Some(left) = self.sleep_left() {
                    match requests.recv_timeout(left) {
                        Ok(r) => r,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => break 'outer,
                    }
                } else {
                    match requests.try_recv() {
                        Ok(r) => r,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => break 'outer,
                    }
                };
                if !self.handle_request(req) {
                    break 'outer;
                }
            }
            if let Some(reason) = self.run_once() {
                self.stop(reason);
            }
        }
        kick::register_current_thread(std::ptr::null_mut());
        self.bus.flush_output();
        let _ = events.send(VcpuEvent { vcpu: self.index, kind: VcpuEventKind::Ended });
    }

    /// What is left of a sleep the guest asked for (None: run it now). Steps do not wait.
    fn sleep_left(&mut self) -> Option<Duration> {
        let left = self
            .sleep_until
            .filter(|_| self.steps_left == 0)
            .and_then(|t| t.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero());
        if left.is_none() {
            self.sleep_until = None;
        }
        left
    }

    /// Pauses and reports why.
    fn stop(&mut self, reason: StopReason) {
        // Whoever hears of the stop reads the guest's output up to it.
        self.bus.flush_output();
        self.state = RunState::Paused;
        self.steps_left = 0;
        let snapshot = Box::new(self.snapshot());
        self.step_over = StepOver::IfStillAt(snapshot.regs.rip);
        let _ = self
            .events
            .send(VcpuEvent { vcpu: self.index, kind: VcpuEventKind::Stopped { reason, snapshot } });
    }

    /// The vCPU's state now. Register reads that fail leave zeroes (reported in the log).
    fn snapshot(&self) -> VcpuSnapshot {
        let regs = self.fd.get_regs().map(|r| convert::regs_from_kvm(&r)).unwrap_or_else(|e| {
            tracing::warn!("KVM_GET_REGS on vCPU {} failed: {e}", self.index);
            Regs::default()
        });
        let sregs = self.fd.get_sregs().map(|s| convert::sregs_from_kvm(&s)).unwrap_or_else(|e| {
            tracing::warn!("KVM_GET_SREGS on vCPU {} failed: {e}", self.index);
            SpecialRegs::default()
        });
        VcpuSnapshot {
            index: self.index,
            state: self.state,
            regs,
            sregs,
            exits: self.exits.clone(),
            host: self.host,
        }
    }

    fn ioctl_err(&self, op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VcpuError {
        let index = self.index;
        move |source| VcpuError::Ioctl { index, op, source }
    }
}

/// The handle through which the VMM, the gdb stub and the TUI reach one vCPU thread.
pub struct VcpuHandle {
    index: usize,
    requests: Sender<VcpuRequest>,
    thread: Option<JoinHandle<()>>,
}

/// How long a request waits for its answer. A vCPU in a long emulated instruction on PVM
/// answers between instructions, well within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl VcpuHandle {
    /// The vCPU's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Sends `req` and kicks the vCPU out of `KVM_RUN` so it sees it now.
    pub fn send(&self, req: VcpuRequest) -> Result<(), VcpuError> {
        self.requests.send(req).map_err(|_| VcpuError::Gone(self.index))?;
        self.kick();
        Ok(())
    }

    /// Sends a request that carries a reply channel and waits for the answer.
    pub fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> VcpuRequest) -> Result<T, VcpuError> {
        let (tx, rx) = mpsc::channel();
        self.send(make(tx))?;
        rx.recv_timeout(REQUEST_TIMEOUT).map_err(|e| match e {
            RecvTimeoutError::Timeout => VcpuError::Timeout(self.index, REQUEST_TIMEOUT),
            RecvTimeoutError::Disconnected => VcpuError::Gone(self.index),
        })
    }

    /// Ends a running `KVM_RUN` (the vCPU then looks at its requests).
    pub fn kick(&self) {
        if let Some(t) = &self.thread {
            if !t.is_finished() {
                let _ = t.kill(kick::kick_signal());
            }
        }
    }

    /// Asks the thread to end and waits for it.
    pub fn terminate(&mut self) {
        let _ = self.send(VcpuRequest::Terminate);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for VcpuHandle {
    fn drop(&mut self) {
        self.terminate();
    }
}
