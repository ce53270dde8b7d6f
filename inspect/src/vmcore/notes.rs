//! The `PT_NOTE` segment of a guest core: per vCPU an `NT_PRSTATUS` note (the layout of
//! Linux's `struct elf_prstatus` on x86-64, which crash and drgn read registers from) and
//! QEMU's "QEMU" CPU-state note (control and segment registers, which crash uses to find
//! the kernel's page tables), then the VMCOREINFO note.

use super::CpuRegs;
use crate::regs::Segment;

/// Size of `struct elf_prstatus` on x86-64.
pub const PRSTATUS_SIZE: usize = 336;
/// Offset of `pr_pid` in it.
const PR_PID: usize = 32;
/// Offset of `pr_reg` (a `struct user_regs_struct`) in it.
const PR_REG: usize = 112;
/// `NT_PRSTATUS`.
const NT_PRSTATUS: u32 = 1;
/// Size of QEMU's `QEMUCPUState` (version 1, with `kernel_gs_base`).
pub const QEMU_CPU_STATE_SIZE: usize = 440;

/// The notes, each name and descriptor padded to 4 bytes.
pub(super) fn build(cpus: &[CpuRegs], vmcoreinfo: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, cpu) in cpus.iter().enumerate() {
        note(&mut out, b"CORE", NT_PRSTATUS, &prstatus(i, cpu));
    }
    for cpu in cpus {
        note(&mut out, b"QEMU", 0, &qemu_cpu_state(cpu));
    }
    if let Some(info) = vmcoreinfo {
        note(&mut out, b"VMCOREINFO", 0, info);
    }
    out
}

fn pad4(b: &mut Vec<u8>) {
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
}

fn note(out: &mut Vec<u8>, name: &[u8], kind: u32, desc: &[u8]) {
    out.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(name);
    out.push(0);
    pad4(out);
    out.extend_from_slice(desc);
    pad4(out);
}

fn prstatus(index: usize, cpu: &CpuRegs) -> Vec<u8> {
    let mut b = vec![0u8; PRSTATUS_SIZE];
    // QEMU numbers the "threads" of a guest core from 1.
    b[PR_PID..PR_PID + 4].copy_from_slice(&(index as u32 + 1).to_le_bytes());
    let (r, s) = (&cpu.regs, &cpu.sregs);
    let user_regs = [
        r.r15,
        r.r14,
        r.r13,
        r.r12,
        r.rbp,
        r.rbx,
        r.r11,
        r.r10,
        r.r9,
        r.r8,
        r.rax,
        r.rcx,
        r.rdx,
        r.rsi,
        r.rdi,
        r.rax, // orig_rax: no system call is being restarted
        r.rip,
        u64::from(s.cs.selector),
        r.rflags,
        r.rsp,
        u64::from(s.ss.selector),
        s.fs.base,
        s.gs.base,
        u64::from(s.ds.selector),
        u64::from(s.es.selector),
        u64::from(s.fs.selector),
        u64::from(s.gs.selector),
    ];
    for (i, v) in user_regs.iter().enumerate() {
        b[PR_REG + i * 8..PR_REG + i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// A segment's attributes where a descriptor's high doubleword has them (QEMU's
/// `SegmentCache.flags`).
fn segment_flags(s: &Segment) -> u32 {
    (u32::from(s.type_) << 8)
        | (u32::from(s.s) << 12)
        | (u32::from(s.dpl & 3) << 13)
        | (u32::from(s.present) << 15)
        | (u32::from(s.long) << 21)
        | (u32::from(s.db) << 22)
        | (u32::from(s.g) << 23)
}

fn segment(b: &mut Vec<u8>, selector: u16, limit: u32, flags: u32, base: u64) {
    b.extend_from_slice(&u32::from(selector).to_le_bytes());
    b.extend_from_slice(&limit.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&base.to_le_bytes());
}

fn qemu_cpu_state(cpu: &CpuRegs) -> Vec<u8> {
    let (r, s) = (&cpu.regs, &cpu.sregs);
    let mut b = Vec::with_capacity(QEMU_CPU_STATE_SIZE);
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(QEMU_CPU_STATE_SIZE as u32).to_le_bytes());
    for v in [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13,
        r.r14, r.r15, r.rip, r.rflags,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for seg in [&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss, &s.ldt, &s.tr] {
        segment(&mut b, seg.selector, seg.limit, segment_flags(seg), seg.base);
    }
    segment(&mut b, 0, u32::from(s.gdt.limit), 0, s.gdt.base);
    segment(&mut b, 0, u32::from(s.idt.limit), 0, s.idt.base);
    for v in [s.cr0, 0, s.cr2, s.cr3, s.cr4] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    // kernel_gs_base (an MSR the snapshot does not carry).
    b.extend_from_slice(&0u64.to_le_bytes());
    debug_assert_eq!(b.len(), QEMU_CPU_STATE_SIZE);
    b
}
