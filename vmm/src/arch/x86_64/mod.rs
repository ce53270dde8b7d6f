//! x86_64: descriptor tables, page tables, CPUID, MSRs and the register state a guest
//! starts in (`vcpu` writes it into a vCPU).

pub mod cpuid;
pub mod gdt;
pub mod msr;
pub mod paging;
pub mod regs;
pub mod vcpu;

/// The privilege level guest code starts at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ring {
    /// CPL0 (supervisor).
    Ring0,
    /// CPL3 (user).
    Ring3,
}

impl Ring {
    /// From a CPL number; only 0 and 3 are supported.
    pub fn from_cpl(cpl: u8) -> Option<Ring> {
        match cpl {
            0 => Some(Ring::Ring0),
            3 => Some(Ring::Ring3),
            _ => None,
        }
    }

    /// The CPL number.
    pub fn cpl(self) -> u8 {
        match self {
            Ring::Ring0 => 0,
            Ring::Ring3 => 3,
        }
    }
}
