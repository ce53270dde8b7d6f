//! Translating one linear address, level by level.

use super::entry::{EntryFlags, Level};
use super::{PagingContext, PagingMode, WalkError};
use crate::addr::{Gpa, Gva, HostAddr};
use crate::mem::GuestPhysMemory;
use serde::Serialize;
use std::fmt;

/// One level of a walk: which table, which entry, what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WalkStep {
    /// The level.
    pub level: Level,
    /// GPA of the table.
    pub table: Gpa,
    /// Index of the entry in the table.
    pub index: u16,
    /// The raw entry.
    pub raw: u64,
    /// Its decoded bits.
    pub flags: EntryFlags,
}

/// A successful translation with every step that led to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Translation {
    /// The linear address.
    pub gva: Gva,
    /// What it maps to.
    pub gpa: Gpa,
    /// Where that is in the VMM process, if known.
    pub host: Option<HostAddr>,
    /// Size of the page (4 KiB, 2 MiB, 4 MiB or 1 GiB; the whole space when paging is off).
    pub page_size: u64,
    /// Each level walked (empty when paging is off).
    pub steps: Vec<WalkStep>,
    /// Writable: RW set at every level.
    pub writable: bool,
    /// User-accessible: US set at every level.
    pub user: bool,
    /// Executable: no level has NX.
    pub executable: bool,
}

/// How one level of a mode is laid out.
#[derive(Clone, Copy)]
pub(super) struct LevelShape {
    pub level: Level,
    /// Lowest linear-address bit the index covers.
    pub shift: u32,
    /// Index width in bits.
    pub index_bits: u32,
    /// Whether PS here maps a large page.
    pub large_ok: bool,
}

const fn shape(level: Level, shift: u32, index_bits: u32, large_ok: bool) -> LevelShape {
    LevelShape { level, shift, index_bits, large_ok }
}

/// The levels of `ctx.mode`, top first, and the entry size in bytes.
pub(super) fn shapes(ctx: &PagingContext) -> (&'static [LevelShape], u64) {
    const L5: &[LevelShape] = &[
        shape(Level::Pml5, 48, 9, false),
        shape(Level::Pml4, 39, 9, false),
        shape(Level::Pdpt, 30, 9, true),
        shape(Level::Pd, 21, 9, true),
        shape(Level::Pt, 12, 9, false),
    ];
    const L4: &[LevelShape] = &[
        shape(Level::Pml4, 39, 9, false),
        shape(Level::Pdpt, 30, 9, true),
        shape(Level::Pd, 21, 9, true),
        shape(Level::Pt, 12, 9, false),
    ];
    const PAE: &[LevelShape] =
        &[shape(Level::Pdpt, 30, 2, false), shape(Level::Pd, 21, 9, true), shape(Level::Pt, 12, 9, false)];
    const B32: &[LevelShape] = &[shape(Level::Pd, 22, 10, true), shape(Level::Pt, 12, 10, false)];
    match ctx.mode {
        PagingMode::Level5 => (L5, 8),
        PagingMode::Level4 => (L4, 8),
        PagingMode::Pae => (PAE, 8),
        PagingMode::Bits32 => (B32, 4),
        PagingMode::Disabled => (&[], 8),
    }
}

/// The GPA of the top-level table.
pub(super) fn root_table(ctx: &PagingContext) -> Gpa {
    match ctx.mode {
        PagingMode::Pae => Gpa(ctx.cr3 & 0xffff_ffe0),
        PagingMode::Bits32 => Gpa(ctx.cr3 & 0xffff_f000),
        _ => Gpa(ctx.cr3 & phys_mask(ctx) & !0xfff),
    }
}

/// Bits of a physical address an entry can hold.
pub(super) fn phys_mask(ctx: &PagingContext) -> u64 {
    ((1u64 << ctx.maxphyaddr) - 1) & !0xfff
}

/// Reads entry `index` of the table at `table`.
pub(super) fn read_entry(mem: &dyn GuestPhysMemory, table: Gpa, index: u64, entry_size: u64) -> Option<u64> {
    let gpa = Gpa(table.0 + index * entry_size);
    if entry_size == 4 {
        mem.read_u32(gpa).map(u64::from)
    } else {
        mem.read_u64(gpa)
    }
}

/// Reserved bits of an entry that must be clear, given its level and whether it is a
/// large-page leaf (SDM 4.5.4 / 4.4.2).
pub(super) fn reserved_bits(ctx: &PagingContext, shape: &LevelShape, raw: u64, large: bool) -> u64 {
    if ctx.mode == PagingMode::Bits32 {
        return 0;
    }
    let mut rsvd = !((1u64 << ctx.maxphyaddr) - 1) & 0x000f_ffff_ffff_ffff;
    if !ctx.nxe && ctx.mode != PagingMode::Pae {
        rsvd |= 1 << 63;
    }
    if ctx.mode == PagingMode::Pae && shape.level == Level::Pdpt {
        rsvd |= 0b1_1110_0110 | (1 << 63);
    }
    if matches!(shape.level, Level::Pml4 | Level::Pml5) {
        rsvd |= 1 << 7;
    }
    if large {
        // Bits 12 (PAT) .. shift-1 of a large page's frame must be zero, except PAT itself.
        rsvd |= ((1u64 << shape.shift) - 1) & !0x1fff;
    }
    raw & rsvd
}

/// Translates `gva` through the page tables of `ctx`.
pub fn translate(mem: &dyn GuestPhysMemory, ctx: &PagingContext, gva: Gva) -> Result<Translation, WalkError> {
    if !ctx.is_canonical(gva) {
        return Err(WalkError::NonCanonical { gva, mode: ctx.mode });
    }
    if ctx.mode == PagingMode::Disabled {
        return Ok(Translation {
            gva,
            gpa: Gpa(gva.0),
            host: mem.host_addr(Gpa(gva.0)),
            page_size: 1 << 12,
            steps: vec![],
            writable: true,
            user: true,
            executable: true,
        });
    }
    let (levels, entry_size) = shapes(ctx);
    let mut table = root_table(ctx);
    let mut steps = Vec::with_capacity(levels.len());
    let (mut writable, mut user, mut executable) = (true, true, true);
    for shape in levels {
        let index = (gva.0 >> shape.shift) & ((1 << shape.index_bits) - 1);
        let raw = read_entry(mem, table, index, entry_size).ok_or(WalkError::TableOutsideMemory {
            gva,
            level: shape.level,
            table,
        })?;
        let flags = EntryFlags::decode(raw, ctx.nxe, ctx.pke);
        let step = WalkStep { level: shape.level, table, index: index as u16, raw, flags };
        steps.push(step);
        if !flags.p {
            return Err(WalkError::NotPresent { gva, level: shape.level, index: index as u16, table });
        }
        let large = shape.large_ok && flags.ps && (ctx.mode != PagingMode::Bits32 || ctx.pse);
        if reserved_bits(ctx, shape, raw, large) != 0 {
            return Err(WalkError::ReservedBits { gva, level: shape.level, index: index as u16, table, raw });
        }
        // PAE PDPTEs carry no access rights.
        if !(ctx.mode == PagingMode::Pae && shape.level == Level::Pdpt) {
            writable &= flags.rw;
            user &= flags.us;
            executable &= !flags.nx;
        }
        let is_leaf = large || shape.level == Level::Pt;
        if is_leaf {
            let page_size = 1u64 << shape.shift;
            let frame = if ctx.mode == PagingMode::Bits32 {
                if large {
                    // 4 MiB page: bits 31:22, plus PSE-36 bits 39:32 from entry bits 20:13.
                    (raw & 0xffc0_0000) | (((raw >> 13) & 0xff) << 32)
                } else {
                    raw & 0xffff_f000
                }
            } else {
                raw & phys_mask(ctx) & !(page_size - 1)
            };
            let gpa = Gpa(frame | (gva.0 & (page_size - 1)));
            return Ok(Translation {
                gva,
                gpa,
                host: mem.host_addr(gpa),
                page_size,
                steps,
                writable,
                user,
                executable,
            });
        }
        table = Gpa(if ctx.mode == PagingMode::Bits32 { raw & 0xffff_f000 } else { raw & phys_mask(ctx) });
    }
    unreachable!("the last level of every mode is a leaf")
}

impl fmt::Display for Translation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(
                f,
                "{:<6} table {:<18} index {:>3}  entry {:#018x}  {}",
                s.level.entry_name(),
                s.table.to_string(),
                s.index,
                s.raw,
                s.flags
            )?;
        }
        let perms = format!(
            "{}{}{}",
            if self.writable { "rw" } else { "r-" },
            if self.executable { "x" } else { "-" },
            if self.user { " user" } else { " supervisor" }
        );
        write!(f, "{} -> {} ({} KiB page, {perms})", self.gva, self.gpa, self.page_size >> 10)?;
        if let Some(h) = self.host {
            write!(f, " -> {h}")?;
        }
        Ok(())
    }
}
