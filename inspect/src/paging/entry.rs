//! Paging-structure entries and their bits (Intel SDM vol. 3, tables 4-14 to 4-20).

use serde::Serialize;
use std::fmt;

/// A level of the paging hierarchy, named as in the SDM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Level {
    /// PML5 (5-level paging only).
    Pml5,
    /// PML4.
    Pml4,
    /// Page-directory-pointer table (4 entries in PAE).
    Pdpt,
    /// Page directory.
    Pd,
    /// Page table.
    Pt,
}

impl Level {
    /// The SDM's name for an entry of this level.
    pub fn entry_name(self) -> &'static str {
        match self {
            Level::Pml5 => "PML5E",
            Level::Pml4 => "PML4E",
            Level::Pdpt => "PDPTE",
            Level::Pd => "PDE",
            Level::Pt => "PTE",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.entry_name())
    }
}

/// Decoded bits of one entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EntryFlags {
    /// Present.
    pub p: bool,
    /// Read/write.
    pub rw: bool,
    /// User/supervisor.
    pub us: bool,
    /// Page-level write-through.
    pub pwt: bool,
    /// Page-level cache disable.
    pub pcd: bool,
    /// Accessed.
    pub a: bool,
    /// Dirty (leaf entries).
    pub d: bool,
    /// Page size: this entry maps a large page.
    pub ps: bool,
    /// Global (leaf entries).
    pub g: bool,
    /// Execute-disable (bit 63, with EFER.NXE).
    pub nx: bool,
    /// Protection key (bits 62:59 of a leaf, with CR4.PKE).
    pub pkey: u8,
}

impl EntryFlags {
    /// Decodes `raw`; `nxe`/`pke` say whether bits 63 and 62:59 have meaning.
    pub fn decode(raw: u64, nxe: bool, pke: bool) -> Self {
        let bit = |n: u32| raw & (1 << n) != 0;
        Self {
            p: bit(0),
            rw: bit(1),
            us: bit(2),
            pwt: bit(3),
            pcd: bit(4),
            a: bit(5),
            d: bit(6),
            ps: bit(7),
            g: bit(8),
            nx: nxe && bit(63),
            pkey: if pke { ((raw >> 59) & 0xf) as u8 } else { 0 },
        }
    }
}

impl fmt::Display for EntryFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.p, "P"),
            (self.rw, "RW"),
            (self.us, "US"),
            (self.pwt, "PWT"),
            (self.pcd, "PCD"),
            (self.a, "A"),
            (self.d, "D"),
            (self.ps, "PS"),
            (self.g, "G"),
            (self.nx, "NX"),
        ];
        let set: Vec<&str> = names.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        write!(f, "{}", if set.is_empty() { "-".to_string() } else { set.join(" ") })?;
        if self.pkey != 0 {
            write!(f, " PKEY={}", self.pkey)?;
        }
        Ok(())
    }
}
