//! The gdbstub `Target`: vCPUs as gdb threads (tid = vCPU index + 1), memory through the
//! guest's page tables (or physical memory after `monitor phys on`), breakpoints and
//! watchpoints through the machine's debug API. Nothing here holds a vCPU fd: every
//! operation is a request to a vCPU thread or a read of shared guest memory.

use crate::arch::{VmRegs, VmscopeX86_64};
use gdbstub::common::{Signal, Tid};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint,
    SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use inspect::symbols::SymbolTable;
use inspect::{Gpa, Gva};
use std::collections::BTreeMap;
use vmm::machine::{HwBreakpoint as VmHwBreakpoint, HwKind, Machine};
use vmm::vstate::vcpu::VcpuRequest;

/// IA32_KERNEL_GS_BASE.
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// What gdb asked each vCPU to do at the next resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run.
    Continue,
    /// One instruction.
    Step,
}

/// The stub's view of a machine.
pub struct VmTarget<'a> {
    pub(crate) machine: &'a Machine,
    pub(crate) symbols: &'a SymbolTable,
    /// gdb's `x` reads guest-physical memory (`monitor phys on`).
    pub(crate) phys: bool,
    pub(crate) actions: BTreeMap<usize, Action>,
    /// gdb's scheduler locking: vCPUs without an action stay paused (otherwise they run).
    pub(crate) scheduler_locked: bool,
    /// A Ctrl-C is being answered: the next pause stop is reported as SIGINT.
    pub(crate) interrupted: bool,
    /// Whether vCPUs were resumed since the last stop gdb saw.
    pub(crate) running: bool,
    /// Whether this session ever let the guest run.
    pub(crate) ever_resumed: bool,
    /// Each vCPU's paging context while the guest is stopped (gdb reads memory a byte
    /// per packet; asking the vCPU for CR3 each time would dominate).
    paging: BTreeMap<usize, inspect::paging::PagingContext>,
}

impl<'a> VmTarget<'a> {
    /// A target over `machine`, naming addresses with `symbols`.
    pub fn new(machine: &'a Machine, symbols: &'a SymbolTable) -> Self {
        Self {
            machine,
            symbols,
            phys: false,
            actions: BTreeMap::new(),
            scheduler_locked: false,
            interrupted: false,
            running: false,
            ever_resumed: false,
            paging: BTreeMap::new(),
        }
    }

    fn vcpu_of(tid: Tid) -> usize {
        tid.get() - 1
    }
}

/// The tid of vCPU `index`.
pub fn tid_of(index: usize) -> Tid {
    Tid::new(index + 1).expect("index + 1 is never zero")
}

fn fatal(e: impl std::fmt::Display) -> TargetError<String> {
    TargetError::Fatal(e.to_string())
}

impl Target for VmTarget<'_> {
    type Arch = VmscopeX86_64;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    // Breakpoints are placed by the VMM itself (int3 in guest memory, hidden from reads).
    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }
}

impl MultiThreadBase for VmTarget<'_> {
    fn read_registers(&mut self, regs: &mut VmRegs, tid: Tid) -> TargetResult<(), Self> {
        let index = Self::vcpu_of(tid);
        let s = self.machine.snapshot(index).map_err(fatal)?;
        let r = &s.regs;
        regs.gpr = [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13,
            r.r14, r.r15,
        ];
        regs.rip = r.rip;
        regs.eflags = r.rflags as u32;
        let sr = &s.sregs;
        regs.segments = [sr.cs, sr.ss, sr.ds, sr.es, sr.fs, sr.gs].map(|seg| u32::from(seg.selector));
        regs.x87_control = [0x37f, 0, 0xffff, 0, 0, 0, 0, 0];
        regs.mxcsr = 0x1f80;
        let kgs = self
            .machine
            .vcpu(index)
            .ok()
            .and_then(|v| v.ask(|tx| VcpuRequest::GetMsrs(vec![MSR_KERNEL_GS_BASE], tx)).ok())
            .and_then(|r| r.ok())
            .and_then(|m| m.first().map(|(_, v)| *v))
            .unwrap_or(0);
        regs.system = [sr.fs.base, sr.gs.base, kgs, sr.cr0, sr.cr2, sr.cr3, sr.cr4, sr.cr8, sr.efer];
        Ok(())
    }

    fn write_registers(&mut self, regs: &VmRegs, tid: Tid) -> TargetResult<(), Self> {
        let index = Self::vcpu_of(tid);
        let s = self.machine.snapshot(index).map_err(fatal)?;
        let g = regs.gpr;
        let new = inspect::regs::Regs {
            rax: g[0],
            rbx: g[1],
            rcx: g[2],
            rdx: g[3],
            rsi: g[4],
            rdi: g[5],
            rbp: g[6],
            rsp: g[7],
            r8: g[8],
            r9: g[9],
            r10: g[10],
            r11: g[11],
            r12: g[12],
            r13: g[13],
            r14: g[14],
            r15: g[15],
            rip: regs.rip,
            // The upper half of RFLAGS is reserved (zero).
            rflags: u64::from(regs.eflags),
        };
        let vcpu = self.machine.vcpu(index).map_err(fatal)?;
        self.paging.remove(&index);
        if new != s.regs {
            vcpu.ask(|tx| VcpuRequest::SetRegs(new, tx)).map_err(fatal)?.map_err(fatal)?;
        }
        let mut sregs = s.sregs;
        let [fs_base, gs_base, _kgs, cr0, cr2, cr3, cr4, cr8, efer] = regs.system;
        (sregs.fs.base, sregs.gs.base) = (fs_base, gs_base);
        (sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.cr8, sregs.efer) = (cr0, cr2, cr3, cr4, cr8, efer);
        if sregs != s.sregs {
            vcpu.ask(|tx| VcpuRequest::SetSregs(sregs, tx)).map_err(fatal)?.map_err(fatal)?;
        }
        Ok(())
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let bytes = if self.phys {
            self.machine.read_phys(Gpa(start), data.len())
        } else {
            let index = Self::vcpu_of(tid);
            let ctx = match self.paging.get(&index) {
                Some(c) => *c,
                None => {
                    let c = self.machine.paging_context(index).map_err(fatal)?;
                    self.paging.insert(index, c);
                    c
                }
            };
            self.machine.read_virt_in(&ctx, Gva(start), data.len())
        };
        if bytes.is_empty() && !data.is_empty() {
            // EFAULT: nothing at that address is mapped.
            return Err(TargetError::Errno(14));
        }
        data[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        let result = if self.phys {
            self.machine.write_phys(Gpa(start), data)
        } else {
            self.machine.write_virt(Self::vcpu_of(tid), Gva(start), data)
        };
        result.map_err(|_| TargetError::Errno(14))
    }

    fn list_active_threads(&mut self, thread_is_active: &mut dyn FnMut(Tid)) -> Result<(), Self::Error> {
        for i in 0..self.machine.vcpu_count() {
            thread_is_active(tid_of(i));
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }

    fn support_thread_extra_info(&mut self) -> Option<ThreadExtraInfoOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for VmTarget<'_> {
    fn resume(&mut self) -> Result<(), Self::Error> {
        self.running = true;
        self.ever_resumed = true;
        self.paging.clear();
        // vCPUs that never run guest code (an ELF guest's parked APs) stay parked.
        for index in 0..self.machine.runnable_vcpus() {
            let action = match self.actions.get(&index) {
                Some(a) => *a,
                // gdbstub's contract: the default action is continue, unless gdb asked for
                // scheduler locking.
                None if self.scheduler_locked => continue,
                None => Action::Continue,
            };
            match action {
                Action::Continue => self.machine.resume(index),
                Action::Step => self.machine.step(index, 1),
            }
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.actions.clear();
        self.scheduler_locked = false;
        Ok(())
    }

    fn set_resume_action_continue(&mut self, tid: Tid, signal: Option<Signal>) -> Result<(), Self::Error> {
        if signal.is_some() {
            return Err("vmscope cannot deliver signals to a vCPU".into());
        }
        self.actions.insert(Self::vcpu_of(tid), Action::Continue);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for VmTarget<'_> {
    fn set_resume_action_step(&mut self, tid: Tid, signal: Option<Signal>) -> Result<(), Self::Error> {
        if signal.is_some() {
            return Err("vmscope cannot deliver signals to a vCPU".into());
        }
        self.actions.insert(Self::vcpu_of(tid), Action::Step);
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for VmTarget<'_> {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        self.scheduler_locked = true;
        Ok(())
    }
}

impl ThreadExtraInfo for VmTarget<'_> {
    fn thread_extra_info(&self, tid: Tid, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let index = Self::vcpu_of(tid);
        let text = match self.machine.snapshot(index) {
            Ok(s) => {
                let sym = self.symbols.locate(s.regs.rip).map(|l| format!(" <{l}>")).unwrap_or_default();
                let parked = if index >= self.machine.runnable_vcpus() { ", parked" } else { "" };
                format!(
                    "vCPU {index}: {:?} CPL{} rip={:#x}{sym}{parked}",
                    s.sregs.cpu_mode(),
                    s.sregs.cpl(),
                    s.regs.rip
                )
            }
            Err(e) => format!("vCPU {index}: {e}"),
        };
        let n = text.len().min(buf.len());
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        Ok(n)
    }
}

impl Breakpoints for VmTarget<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for VmTarget<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.machine.insert_sw_breakpoint(Gva(addr)).is_ok())
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.machine.remove_sw_breakpoint(Gva(addr)).is_ok())
    }
}

impl HwBreakpoint for VmTarget<'_> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        // false: all four debug registers are taken; gdb reports it.
        Ok(self.machine.insert_hw_breakpoint(VmHwBreakpoint { addr, kind: HwKind::Execute, len: 1 }).is_ok())
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.machine.remove_hw_breakpoint(addr, HwKind::Execute).is_ok())
    }
}

fn hw_kind(kind: WatchKind) -> HwKind {
    match kind {
        WatchKind::Write => HwKind::Write,
        WatchKind::Read | WatchKind::ReadWrite => HwKind::Access,
    }
}

impl HwWatchpoint for VmTarget<'_> {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        // On PVM, debug registers do not fire for guest code: refuse, so gdb can fall back
        // to software watchpoints (`set can-use-hw-watchpoints 0`).
        if self.machine.host() == inspect::HostKind::Pvm && std::env::var_os("VMSCOPE_TRY_DR").is_none() {
            return Ok(false);
        }
        Ok(self.machine.insert_hw_breakpoint(VmHwBreakpoint { addr, kind: hw_kind(kind), len }).is_ok())
    }

    fn remove_hw_watchpoint(&mut self, addr: u64, _len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        Ok(self.machine.remove_hw_breakpoint(addr, hw_kind(kind)).is_ok())
    }
}
