//! The gdbstub `Target`: vCPUs as gdb threads (tid = vCPU index + 1), registers from the
//! stop gdb is looking at, memory through the guest's page tables (or physical memory after
//! `monitor phys on`). Nothing here holds a vCPU fd: every operation is a request to a vCPU
//! thread or a read of shared guest memory.
//!
//! - `resume.rs`: gdb's resume actions (continue, step, range step) become vCPU requests.
//! - `stop.rs`: vCPU stop events become gdb stop replies (all-stop, Ctrl-C, exits, faults).
//! - `breakpoints.rs`: `Z`/`z` packets become the machine's breakpoints and watchpoints.

mod breakpoints;
mod resume;
mod stop;

use crate::arch::{VmRegs, VmscopeX86_64};
use crate::cache::{StopCache, MSR_KERNEL_GS_BASE};
use crate::step::Stepping;
use debugger::watch::{Access, Watch};
use gdbstub::common::Tid;
use gdbstub::target::ext::base::multithread::{MultiThreadBase, MultiThreadResumeOps};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::BreakpointsOps;
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use inspect::symbols::SymbolTable;
use inspect::{Gpa, Gva};
use resume::Action;
use std::collections::{BTreeMap, VecDeque};
use vmm::machine::{Machine, Outcome};
use vmm::vstate::vcpu::{StopReason, VcpuRequest, VcpuSnapshot};

/// The stub's view of a machine, for one gdb session.
pub struct VmTarget<'a> {
    pub(crate) machine: &'a Machine,
    pub(crate) symbols: &'a SymbolTable,
    /// gdb's memory accesses use guest-physical addresses (`monitor phys on`).
    pub(crate) phys: bool,
    /// Registers of the stop gdb is looking at.
    cache: StopCache,
    /// What gdb asked each vCPU to do at the next resume.
    actions: BTreeMap<usize, Action>,
    /// gdb's scheduler locking: vCPUs without an action stay paused (otherwise they run).
    scheduler_locked: bool,
    /// What each vCPU does for gdb since the last resume (absent: stays paused).
    stepping: BTreeMap<usize, Stepping>,
    /// Emulated watchpoints: the accesses of the instruction each stepped vCPU executes.
    in_flight: BTreeMap<usize, Vec<Access>>,
    /// The watchpoints gdb set, as it asked for them.
    watches: Vec<Watch>,
    /// Stops of other vCPUs that raced with the one gdb was told about.
    pending: VecDeque<(usize, StopReason, Box<VcpuSnapshot>)>,
    /// A Ctrl-C is being answered: the next stop is reported as SIGINT.
    interrupted: bool,
    /// Whether vCPUs were resumed since the last stop gdb saw.
    pub(crate) running: bool,
    /// Whether this session ever let the guest run.
    pub(crate) ever_resumed: bool,
    /// How the guest ended, once it has.
    pub(crate) end: Option<Outcome>,
    /// gdb resumed a guest that had already faulted: tell it the process is gone.
    terminate: bool,
    /// When the session must end (`--timeout`).
    pub(crate) deadline: Option<std::time::Instant>,
    /// The deadline passed while the guest ran: the session ended with SIGALRM.
    pub(crate) timed_out: bool,
    /// `monitor migrate` moved the guest here (the URI): the session and the process end.
    pub(crate) migrated: Option<String>,
}

impl<'a> VmTarget<'a> {
    /// A target over `machine` (which the caller has paused), naming addresses with
    /// `symbols`.
    pub fn new(machine: &'a Machine, symbols: &'a SymbolTable) -> Self {
        Self {
            machine,
            symbols,
            phys: false,
            cache: StopCache::default(),
            actions: BTreeMap::new(),
            scheduler_locked: false,
            stepping: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            watches: vec![],
            pending: VecDeque::new(),
            interrupted: false,
            running: false,
            ever_resumed: false,
            end: None,
            terminate: false,
            deadline: None,
            timed_out: false,
            migrated: None,
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
        let s = self.cache.snapshot(self.machine, index).map_err(fatal)?;
        let r = &s.regs;
        regs.gpr = [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13,
            r.r14, r.r15,
        ];
        regs.rip = r.rip;
        regs.eflags = r.rflags as u32;
        let sr = s.sregs;
        regs.segments = [sr.cs, sr.ss, sr.ds, sr.es, sr.fs, sr.gs].map(|seg| u32::from(seg.selector));
        regs.x87_control = [0x37f, 0, 0xffff, 0, 0, 0, 0, 0];
        regs.mxcsr = 0x1f80;
        let kgs = self.cache.kernel_gs_base(self.machine, index);
        regs.system = [sr.fs.base, sr.gs.base, kgs, sr.cr0, sr.cr2, sr.cr3, sr.cr4, sr.cr8, sr.efer];
        Ok(())
    }

    fn write_registers(&mut self, regs: &VmRegs, tid: Tid) -> TargetResult<(), Self> {
        let index = Self::vcpu_of(tid);
        let s = self.cache.snapshot(self.machine, index).map_err(fatal)?.clone();
        let old_kgs = self.cache.kernel_gs_base(self.machine, index);
        self.cache.forget(index);
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
        if new != s.regs {
            vcpu.ask(|tx| VcpuRequest::SetRegs(new, tx)).map_err(fatal)?.map_err(fatal)?;
        }
        let mut sregs = s.sregs;
        let [fs_base, gs_base, kgs, cr0, cr2, cr3, cr4, cr8, efer] = regs.system;
        (sregs.fs.base, sregs.gs.base) = (fs_base, gs_base);
        (sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.cr8, sregs.efer) = (cr0, cr2, cr3, cr4, cr8, efer);
        if sregs != s.sregs {
            vcpu.ask(|tx| VcpuRequest::SetSregs(sregs, tx)).map_err(fatal)?.map_err(fatal)?;
        }
        if kgs != old_kgs {
            vcpu.ask(|tx| VcpuRequest::SetMsrs(vec![(MSR_KERNEL_GS_BASE, kgs)], tx))
                .map_err(fatal)?
                .map_err(fatal)?;
        }
        Ok(())
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        // gdbstub splits an `m` packet of any length into calls of at most its buffer's size
        // and appends each to one reply; a gdb never asks for more than fits in the packet
        // size it was told (MAX_MEM_READ). A larger `m` is refused on its first call, before
        // any of the reply is written, so the client gets a clean E22 and the stub never
        // reads (or buffers) what a client's length asks for.
        if data.len() > crate::MAX_MEM_READ {
            return Err(TargetError::Errno(22));
        }
        let bytes = if self.phys {
            self.machine.read_phys(Gpa(start), data.len())
        } else {
            let ctx = self.cache.paging(self.machine, Self::vcpu_of(tid)).map_err(fatal)?;
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

impl ThreadExtraInfo for VmTarget<'_> {
    fn thread_extra_info(&self, tid: Tid, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let index = Self::vcpu_of(tid);
        let snapshot = match self.cache.peek(index) {
            Some(s) => Ok(s.clone()),
            None => self.machine.snapshot(index),
        };
        let text = match snapshot {
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
