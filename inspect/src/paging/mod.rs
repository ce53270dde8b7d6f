//! Page tables: walking a guest's address space from CR3 the way the MMU does (Intel SDM
//! vol. 3, chapter 4), for one address ([`translate`]) or all of it ([`mappings`]).
//!
//! Every paging mode is handled: paging off, 32-bit (4 KiB and 4 MiB pages), PAE, and
//! 4- and 5-level long mode (4 KiB, 2 MiB and 1 GiB pages). A walk that fails says where:
//! "not present at PDE index 3 (table gpa:0x…)".

mod entry;
mod map;
mod walk;

pub use entry::{EntryFlags, Level};
pub use map::{mappings, Mapping, MappingList, MAX_ENTRIES, MAX_PROBLEMS, MAX_READS, MAX_SHARED_READS};
pub use walk::{translate, Translation, WalkStep};

use crate::addr::{Gpa, Gva};
use crate::regs::{cr0, cr4, efer, SpecialRegs};
use serde::Serialize;

/// How linear addresses are translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PagingMode {
    /// CR0.PG clear: linear = physical.
    Disabled,
    /// 32-bit paging (CR4.PAE clear).
    Bits32,
    /// PAE paging (32-bit linear addresses, 64-bit entries).
    Pae,
    /// 4-level long-mode paging.
    Level4,
    /// 5-level long-mode paging (CR4.LA57).
    Level5,
}

/// What a walk needs from the control registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PagingContext {
    /// The mode.
    pub mode: PagingMode,
    /// CR3.
    pub cr3: u64,
    /// EFER.NXE: bit 63 of entries means no-execute.
    pub nxe: bool,
    /// CR4.PSE: 4 MiB pages in 32-bit paging.
    pub pse: bool,
    /// CR4.PKE: bits 62:59 of leaf entries are a protection key.
    pub pke: bool,
    /// Physical-address width (MAXPHYADDR); bits above it in an entry are reserved.
    pub maxphyaddr: u8,
}

impl PagingContext {
    /// The context of a vCPU with these special registers.
    pub fn from_sregs(s: &SpecialRegs) -> Self {
        let mode = if s.cr0 & cr0::PG == 0 {
            PagingMode::Disabled
        } else if s.cr4 & cr4::PAE == 0 {
            PagingMode::Bits32
        } else if s.efer & efer::LMA == 0 {
            PagingMode::Pae
        } else if s.cr4 & cr4::LA57 != 0 {
            PagingMode::Level5
        } else {
            PagingMode::Level4
        };
        Self {
            mode,
            cr3: s.cr3,
            nxe: s.efer & efer::NXE != 0,
            pse: s.cr4 & cr4::PSE != 0,
            pke: s.cr4 & cr4::PKE != 0,
            maxphyaddr: 52,
        }
    }

    /// A long-mode context (tests, tools).
    pub fn long_mode(cr3: u64, la57: bool) -> Self {
        Self {
            mode: if la57 { PagingMode::Level5 } else { PagingMode::Level4 },
            cr3,
            nxe: true,
            pse: true,
            pke: false,
            maxphyaddr: 52,
        }
    }

    /// Bits of a linear address this mode translates (32, 48 or 57).
    pub fn linear_bits(&self) -> u32 {
        match self.mode {
            PagingMode::Disabled => 64,
            PagingMode::Bits32 | PagingMode::Pae => 32,
            PagingMode::Level4 => 48,
            PagingMode::Level5 => 57,
        }
    }

    /// Whether `gva` is canonical for this mode (sign-extended from the top bit).
    pub fn is_canonical(&self, gva: Gva) -> bool {
        match self.mode {
            PagingMode::Level4 | PagingMode::Level5 => {
                let bits = self.linear_bits();
                let top = (gva.0 as i64) >> (bits - 1);
                top == 0 || top == -1
            }
            PagingMode::Bits32 | PagingMode::Pae => gva.0 <= u64::from(u32::MAX),
            PagingMode::Disabled => true,
        }
    }
}

/// Why a walk failed. Every message names the address and the level.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum WalkError {
    /// Not canonical for the paging mode.
    #[error("{gva} is not a canonical address in {mode:?} paging")]
    NonCanonical {
        /// The address.
        gva: Gva,
        /// The mode.
        mode: PagingMode,
    },
    /// An entry on the way is not present.
    #[error("{gva} is not mapped: not present at {level} index {index} (table {table})")]
    NotPresent {
        /// The address.
        gva: Gva,
        /// Where the walk stopped.
        level: Level,
        /// Index into that table.
        index: u16,
        /// The table.
        table: Gpa,
    },
    /// An entry has reserved bits set (a #PF with RSVD on real hardware).
    #[error("{gva}: reserved bits set in the {level} entry {raw:#018x} at index {index} (table {table})")]
    ReservedBits {
        /// The address.
        gva: Gva,
        /// The level.
        level: Level,
        /// Index into that table.
        index: u16,
        /// The table.
        table: Gpa,
        /// The entry.
        raw: u64,
    },
    /// A table lies outside guest memory.
    #[error("{gva}: the {level} table at {table} is outside guest memory")]
    TableOutsideMemory {
        /// The address.
        gva: Gva,
        /// The level.
        level: Level,
        /// The table.
        table: Gpa,
    },
}

#[cfg(test)]
pub(crate) mod test_utils;

#[cfg(test)]
mod tests;
