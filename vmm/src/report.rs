//! The report vmscope prints when a guest ends badly: what happened, the registers, and
//! the instruction at RIP.

use crate::vstate::memory::{GuestMemory, PhysView};
use crate::vstate::vcpu::{StopReason, VcpuSnapshot};
use inspect::{Gpa, GuestPhysMemory};
use std::fmt::Write;

/// A sentence for a stop reason.
pub fn describe(reason: &StopReason) -> String {
    match reason {
        StopReason::Paused => "paused".into(),
        StopReason::Step => "single-step completed".into(),
        StopReason::Breakpoint { addr } => format!("breakpoint at {addr:#x}"),
        StopReason::HwBreakpoint { index, dr6 } => {
            format!("hardware breakpoint/watchpoint DR{index} (DR6={dr6:#x})")
        }
        StopReason::GuestExit { code } => format!("guest exited with code {code}"),
        StopReason::Shutdown => {
            "triple fault (KVM_EXIT_SHUTDOWN): the guest took an exception it could not handle".into()
        }
        StopReason::Reset => "the guest reset the machine (i8042 command 0xfe to port 0x64)".into(),
        StopReason::SystemEvent { kind } => format!("system event {kind} (KVM_EXIT_SYSTEM_EVENT)"),
        StopReason::Halted => "the guest halted with no interrupt to wake it (KVM_EXIT_HLT)".into(),
        StopReason::InternalError(f) if f.is_emulation() => {
            let bytes = if f.insn_bytes.is_empty() {
                String::new()
            } else {
                format!(" on bytes {}", hex(&f.insn_bytes))
            };
            format!("KVM's instruction emulator could not run an instruction (KVM_EXIT_INTERNAL_ERROR, suberror 1){bytes}")
        }
        StopReason::InternalError(f) => format!(
            "KVM internal error, suberror {} (KVM_EXIT_INTERNAL_ERROR) data {:x?}",
            f.suberror, f.data
        ),
        StopReason::FailEntry { reason } => {
            format!("KVM could not enter the guest (KVM_EXIT_FAIL_ENTRY, reason {reason:#x})")
        }
        StopReason::Unhandled { exit } => format!("unhandled exit {exit}"),
        StopReason::RunFailed { error } => format!("KVM_RUN failed: {error}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// The instruction bytes at RIP: from the emulation failure if KVM gave them, otherwise
/// read from guest memory (identity-mapped guests: RIP is the GPA; otherwise through the
/// page tables).
pub fn instruction_bytes(reason: &StopReason, snapshot: &VcpuSnapshot, mem: &GuestMemory) -> Vec<u8> {
    if let StopReason::InternalError(f) = reason {
        if !f.insn_bytes.is_empty() {
            return f.insn_bytes.clone();
        }
    }
    let view = PhysView(mem);
    let ctx = inspect::paging::PagingContext::from_sregs(&snapshot.sregs);
    let Ok(t) = inspect::paging::translate(&view, &ctx, inspect::Gva(snapshot.regs.rip)) else {
        return vec![];
    };
    let mut buf = [0u8; 15];
    let n = view.read_phys(Gpa(t.gpa.0), &mut buf);
    buf[..n].to_vec()
}

/// The full report: reason, host, registers, and the decoded instruction at RIP.
pub fn render(reason: &StopReason, snapshot: &VcpuSnapshot, mem: &GuestMemory) -> String {
    let r = &snapshot.regs;
    let s = &snapshot.sregs;
    let mut out = String::new();
    let _ = writeln!(out, "{} on vCPU {}", describe(reason), snapshot.index);
    let _ = writeln!(out, "  host: {}", snapshot.host.describe());
    let _ = writeln!(out, "  mode: {:?}, CPL {}", s.cpu_mode(), s.cpl());
    let _ = writeln!(out, "  rip={:016x} rsp={:016x} rflags={:08x}", r.rip, r.rsp, r.rflags);
    let _ = writeln!(out, "  rax={:016x} rbx={:016x} rcx={:016x} rdx={:016x}", r.rax, r.rbx, r.rcx, r.rdx);
    let _ = writeln!(out, "  rsi={:016x} rdi={:016x} rbp={:016x} r8 ={:016x}", r.rsi, r.rdi, r.rbp, r.r8);
    let _ = writeln!(out, "  r9 ={:016x} r10={:016x} r11={:016x} r12={:016x}", r.r9, r.r10, r.r11, r.r12);
    let _ = writeln!(out, "  r13={:016x} r14={:016x} r15={:016x}", r.r13, r.r14, r.r15);
    let _ = writeln!(
        out,
        "  cr0={:08x} cr2={:016x} cr3={:016x} cr4={:08x} efer={:x}",
        s.cr0, s.cr2, s.cr3, s.cr4, s.efer
    );
    let _ = writeln!(
        out,
        "  cs={:04x} ss={:04x} idt={:x}/{:x} gdt={:x}/{:x}",
        s.cs.selector, s.ss.selector, s.idt.base, s.idt.limit, s.gdt.base, s.gdt.limit
    );
    let bytes = instruction_bytes(reason, snapshot, mem);
    if bytes.is_empty() {
        let _ = writeln!(out, "  instruction at rip: (not readable)");
    } else {
        let insn = inspect::disasm::decode_one(&bytes, r.rip, s.cpu_mode());
        let _ = writeln!(out, "  instruction at rip: {}  [{}]", insn.text, hex(&insn.bytes));
    }
    out
}
