//! A vCPU's register state as inspect sees it: plain data, filled from KVM by the VMM
//! (or from a test), named after the x86 manuals.

use serde::{Deserialize, Serialize};

/// General-purpose registers, RIP and RFLAGS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// A segment register with its hidden (descriptor-cache) part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The selector.
    pub selector: u16,
    /// Base address.
    pub base: u64,
    /// Limit (in bytes, already scaled by the granularity bit).
    pub limit: u32,
    /// Descriptor type (4 bits).
    pub type_: u8,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Present.
    pub present: bool,
    /// 64-bit code segment (L).
    pub long: bool,
    /// Default operation size (D/B): 32-bit when set.
    pub db: bool,
    /// Granularity.
    pub g: bool,
    /// S: code/data (true) or system (false).
    pub s: bool,
    /// Unusable (VMX notion; KVM reports it).
    pub unusable: bool,
}

/// A descriptor-table register (GDTR, IDTR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorTable {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes.
    pub limit: u16,
}

/// Segment, control and system registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct SpecialRegs {
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    pub tr: Segment,
    pub ldt: Segment,
    pub gdt: DescriptorTable,
    pub idt: DescriptorTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub apic_base: u64,
}

/// CR0 bits (Intel SDM vol. 3, 2.5).
pub mod cr0 {
    /// Protection enable.
    pub const PE: u64 = 1 << 0;
    /// Monitor coprocessor.
    pub const MP: u64 = 1 << 1;
    /// x87 emulation.
    pub const EM: u64 = 1 << 2;
    /// Task switched.
    pub const TS: u64 = 1 << 3;
    /// Extension type.
    pub const ET: u64 = 1 << 4;
    /// Numeric error.
    pub const NE: u64 = 1 << 5;
    /// Write protect.
    pub const WP: u64 = 1 << 16;
    /// Alignment mask.
    pub const AM: u64 = 1 << 18;
    /// Not write-through.
    pub const NW: u64 = 1 << 29;
    /// Cache disable.
    pub const CD: u64 = 1 << 30;
    /// Paging.
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits (Intel SDM vol. 3, 2.5).
pub mod cr4 {
    /// Page size extensions (4 MiB pages in 32-bit paging).
    pub const PSE: u64 = 1 << 4;
    /// Physical address extension.
    pub const PAE: u64 = 1 << 5;
    /// Page global enable.
    pub const PGE: u64 = 1 << 7;
    /// OS supports FXSAVE/FXRSTOR.
    pub const OSFXSR: u64 = 1 << 9;
    /// OS supports unmasked SIMD FP exceptions.
    pub const OSXMMEXCPT: u64 = 1 << 10;
    /// 57-bit linear addresses (5-level paging).
    pub const LA57: u64 = 1 << 12;
    /// FSGSBASE instructions.
    pub const FSGSBASE: u64 = 1 << 16;
    /// PCID.
    pub const PCIDE: u64 = 1 << 17;
    /// XSAVE.
    pub const OSXSAVE: u64 = 1 << 18;
    /// Supervisor-mode execution prevention.
    pub const SMEP: u64 = 1 << 20;
    /// Supervisor-mode access prevention.
    pub const SMAP: u64 = 1 << 21;
    /// Protection keys for user pages.
    pub const PKE: u64 = 1 << 22;
}

/// IA32_EFER bits.
pub mod efer {
    /// SYSCALL enable.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active.
    pub const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
}

/// RFLAGS bits.
pub mod rflags {
    /// Carry.
    pub const CF: u64 = 1 << 0;
    /// Reserved, always 1.
    pub const FIXED: u64 = 1 << 1;
    /// Trap (single-step).
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable.
    pub const IF: u64 = 1 << 9;
    /// I/O privilege level (2 bits).
    pub const IOPL_MASK: u64 = 3 << 12;
    /// Resume flag.
    pub const RF: u64 = 1 << 16;
}

/// The processor mode code runs in, which decides how it is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpuMode {
    /// Real mode (CR0.PE clear).
    Real,
    /// 16-bit protected mode.
    Protected16,
    /// 32-bit protected mode (EFER.LMA clear).
    Protected32,
    /// Compatibility mode: IA-32e mode (EFER.LMA set) running a 16-bit code segment
    /// (CS.L and CS.D clear).
    Compatibility16,
    /// Compatibility mode: IA-32e mode running a 32-bit code segment (CS.L clear, CS.D set).
    Compatibility32,
    /// 64-bit mode: IA-32e mode with CS.L set.
    Long64,
}

impl CpuMode {
    /// Code bitness: 16, 32 or 64.
    pub fn bitness(self) -> u32 {
        match self {
            CpuMode::Real | CpuMode::Protected16 | CpuMode::Compatibility16 => 16,
            CpuMode::Protected32 | CpuMode::Compatibility32 => 32,
            CpuMode::Long64 => 64,
        }
    }
}

impl SpecialRegs {
    /// The mode the vCPU executes in, from CR0.PE, EFER.LMA and CS.L/D.
    pub fn cpu_mode(&self) -> CpuMode {
        if self.cr0 & cr0::PE == 0 {
            CpuMode::Real
        } else if self.efer & efer::LMA != 0 {
            if self.cs.long {
                CpuMode::Long64
            } else if self.cs.db {
                CpuMode::Compatibility32
            } else {
                CpuMode::Compatibility16
            }
        } else if self.cs.db {
            CpuMode::Protected32
        } else {
            CpuMode::Protected16
        }
    }

    /// The current privilege level (CS.DPL in protected mode; the low bits of SS in
    /// general, which KVM keeps equal).
    pub fn cpl(&self) -> u8 {
        if self.cr0 & cr0::PE == 0 {
            0
        } else {
            self.cs.dpl
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_from_control_registers() {
        let mut s = SpecialRegs::default();
        assert_eq!(s.cpu_mode(), CpuMode::Real);
        s.cr0 = cr0::PE;
        s.cs.db = true;
        assert_eq!(s.cpu_mode(), CpuMode::Protected32);
        s.efer = efer::LME | efer::LMA;
        s.cs.long = true;
        s.cs.db = false;
        s.cs.dpl = 3;
        assert_eq!(s.cpu_mode(), CpuMode::Long64);
        assert_eq!(s.cpl(), 3);
        s.cs.long = false;
        s.cs.db = true;
        assert_eq!(s.cpu_mode(), CpuMode::Compatibility32);
        assert_eq!(s.cpu_mode().bitness(), 32);
        s.cs.db = false;
        assert_eq!(s.cpu_mode(), CpuMode::Compatibility16);
    }
}
