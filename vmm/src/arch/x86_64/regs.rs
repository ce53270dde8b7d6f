//! The register state a long-mode guest starts in: control registers, segments, the
//! descriptor tables and the FPU, at the chosen privilege level.

use super::{gdt, Ring};
use inspect::regs::{cr0, cr4, efer, rflags};
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use vmscope_abi::layout;

/// Where a long-mode guest starts.
#[derive(Clone, Copy, Debug)]
pub struct LongModeEntry {
    /// RIP.
    pub entry: u64,
    /// RSP.
    pub stack: u64,
    /// RDI (the first argument: the boot-info GPA).
    pub arg: u64,
    /// CR3 (the PML4 GPA).
    pub cr3: u64,
    /// The CPL the guest starts at.
    pub ring: Ring,
}

/// Special registers for 64-bit mode at `entry.ring`, starting from KVM's reset state `base`.
pub fn long_mode_sregs(base: kvm_sregs, entry: &LongModeEntry) -> kvm_sregs {
    let mut s = base;
    let (cs, data, tr) = gdt::segments_for(entry.ring.cpl());
    s.cs = cs;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = tr;
    s.gdt.base = layout::GDT_GPA;
    s.gdt.limit = (std::mem::size_of_val(&gdt::gdt_entries()) - 1) as u16;
    // No IDT: an exception in the guest becomes a triple fault, which vmscope reports.
    s.idt.base = 0;
    s.idt.limit = 0;
    s.cr0 = cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::PG;
    s.cr3 = entry.cr3;
    s.cr4 = cr4::PAE | cr4::OSFXSR | cr4::OSXMMEXCPT;
    s.efer = efer::LME | efer::LMA;
    s
}

/// General registers: RIP, RSP, RDI, and RFLAGS with IOPL=3 at CPL3 so `in`/`out` work.
pub fn long_mode_regs(entry: &LongModeEntry) -> kvm_regs {
    let iopl = if entry.ring == Ring::Ring3 { rflags::IOPL_MASK } else { 0 };
    kvm_regs {
        rip: entry.entry,
        rsp: entry.stack,
        rbp: 0,
        rdi: entry.arg,
        rflags: rflags::FIXED | iopl,
        ..Default::default()
    }
}

/// The FPU state after FNINIT with SSE exceptions masked.
pub fn initial_fpu() -> kvm_fpu {
    kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring3_entry() {
        let e = LongModeEntry {
            entry: 0x10_0000,
            stack: 0x3ff_fff8,
            arg: 0x3000,
            cr3: 0x9000,
            ring: Ring::Ring3,
        };
        let s = long_mode_sregs(kvm_sregs::default(), &e);
        assert_eq!((s.cs.dpl, s.ss.dpl, s.cs.l), (3, 3, 1));
        assert_eq!(s.cr3, 0x9000);
        assert_ne!(s.efer & efer::LMA, 0);
        assert_eq!(s.gdt.limit, 7 * 8 - 1);
        let r = long_mode_regs(&e);
        assert_eq!(r.rflags & rflags::IOPL_MASK, rflags::IOPL_MASK);
        assert_eq!((r.rip, r.rsp, r.rdi), (0x10_0000, 0x3ff_fff8, 0x3000));
        let r0 = long_mode_regs(&LongModeEntry { ring: Ring::Ring0, ..e });
        assert_eq!(r0.rflags, rflags::FIXED);
    }
}
