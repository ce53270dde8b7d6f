//! Listing an address space: every mapping reachable from CR3, merged into ranges that are
//! contiguous in both linear and physical addresses and share permissions. Corrupted
//! tables (loops, tables outside memory, reserved bits) are reported, never followed
//! forever: the walk visits at most [`MAX_ENTRIES`] present entries, reads at most
//! [`MAX_READS`] entries, and re-reads tables it has already listed (a table that several
//! entries point at) for at most [`MAX_SHARED_READS`] entries.

use super::entry::EntryFlags;
use super::walk::{phys_mask, read_entry, reserved_bits, root_table, shapes, LevelShape};
use super::{PagingContext, PagingMode};
use crate::addr::{Gpa, Gva};
use crate::mem::GuestPhysMemory;
use serde::Serialize;
use std::collections::HashSet;
use std::fmt;

/// The most present entries one listing visits.
pub const MAX_ENTRIES: u64 = 1 << 22;

/// The most entries (present or not) one listing reads. Every table visited costs 512
/// reads but counts only the one present entry that led to it, so without this a guest's
/// tables could make one listing read 512 x [`MAX_ENTRIES`] entries (minutes of work). A
/// full 4-level space of 4 Mi 4 KiB pages takes about 4.2 Mi reads.
pub const MAX_READS: u64 = 1 << 24;

/// The most entries one listing reads in tables it has listed before. Real page tables
/// hardly ever share a table between two entries (an alias of the kernel's mapping does, a
/// few times), so a real walk reads each table once, at most 512 entries per table of guest
/// memory. A hostile guest's tables can all point at one another, a few pages making a
/// tree of 512^3 visits (seconds of work until [`MAX_READS`]): past this budget an entry
/// that leads to a table listed already is counted in
/// [`MappingList::shared_not_followed`] and not followed again.
pub const MAX_SHARED_READS: u64 = 1 << 16;

/// The most problems one listing describes; the rest are counted in a last line. Tables
/// that point at one shared table full of bad entries would otherwise give one message per
/// visited entry (4 Mi strings, over a gigabyte, from three pages of guest memory).
pub const MAX_PROBLEMS: usize = 256;

/// A range of linear addresses mapped to a contiguous physical range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Mapping {
    /// First linear address.
    pub gva: Gva,
    /// First physical address.
    pub gpa: Gpa,
    /// Size in bytes.
    pub size: u64,
    /// Writable.
    pub writable: bool,
    /// User-accessible.
    pub user: bool,
    /// Executable.
    pub executable: bool,
}

/// The result of listing an address space.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MappingList {
    /// Merged mappings in linear-address order.
    pub mappings: Vec<Mapping>,
    /// Present entries visited.
    pub entries_visited: u64,
    /// The walk stopped at [`MAX_ENTRIES`] present entries or [`MAX_READS`] entries read.
    pub truncated: bool,
    /// Corruption found on the way (loops, tables outside memory, reserved bits).
    pub problems: Vec<String>,
    /// Entries that lead to a table listed already, not followed again once the walk had
    /// re-read [`MAX_SHARED_READS`] entries of such tables.
    pub shared_not_followed: u64,
}

#[derive(Clone, Copy)]
struct Perms {
    writable: bool,
    user: bool,
    executable: bool,
}

struct Walker<'a> {
    mem: &'a dyn GuestPhysMemory,
    ctx: &'a PagingContext,
    levels: &'static [LevelShape],
    entry_size: u64,
    out: MappingList,
    ancestors: Vec<Gpa>,
    /// Problems found beyond [`MAX_PROBLEMS`].
    unlisted_problems: u64,
    /// Entries read so far.
    reads: u64,
    /// The tables listed so far (bounded by [`MAX_READS`] / 512 tables).
    listed: HashSet<u64>,
    /// Entries read so far in tables listed before.
    shared_reads: u64,
}

/// Lists every mapping of the address space `ctx` describes.
pub fn mappings(mem: &dyn GuestPhysMemory, ctx: &PagingContext) -> MappingList {
    if ctx.mode == PagingMode::Disabled {
        return MappingList {
            problems: vec!["paging is off: linear addresses are physical".into()],
            ..Default::default()
        };
    }
    let (levels, entry_size) = shapes(ctx);
    let mut w = Walker {
        mem,
        ctx,
        levels,
        entry_size,
        out: MappingList::default(),
        ancestors: vec![],
        unlisted_problems: 0,
        reads: 0,
        listed: HashSet::new(),
        shared_reads: 0,
    };
    w.table(0, root_table(ctx), 0, Perms { writable: true, user: true, executable: true });
    if w.unlisted_problems > 0 {
        w.out.problems.push(format!("... and {} more problems, not listed", w.unlisted_problems));
    }
    w.out
}

impl Walker<'_> {
    fn sign_extend(&self, va: u64) -> u64 {
        let bits = self.ctx.linear_bits();
        if bits >= 64 {
            return va;
        }
        let shift = 64 - bits;
        (((va << shift) as i64) >> shift) as u64
    }

    /// Records a problem; the message is only built while fewer than [`MAX_PROBLEMS`] are.
    fn problem(&mut self, message: impl FnOnce() -> String) {
        if self.out.problems.len() < MAX_PROBLEMS {
            self.out.problems.push(message());
        } else {
            self.unlisted_problems += 1;
        }
    }

    fn table(&mut self, depth: usize, table: Gpa, base: u64, perms: Perms) {
        let shape = self.levels[depth];
        let shared = !self.listed.insert(table.0);
        self.ancestors.push(table);
        for index in 0..(1u64 << shape.index_bits) {
            if self.out.truncated {
                break;
            }
            self.reads += 1;
            if self.reads > MAX_READS {
                self.out.truncated = true;
                break;
            }
            if shared {
                self.shared_reads += 1;
            }
            let Some(raw) = read_entry(self.mem, table, index, self.entry_size) else {
                self.problem(|| format!("{} table at {table} is outside guest memory", shape.level));
                break;
            };
            let flags = EntryFlags::decode(raw, self.ctx.nxe, self.ctx.pke);
            if !flags.p {
                continue;
            }
            self.out.entries_visited += 1;
            if self.out.entries_visited >= MAX_ENTRIES {
                self.out.truncated = true;
                break;
            }
            let va = self.sign_extend(base | (index << shape.shift));
            let large = shape.large_ok && flags.ps && (self.ctx.mode != PagingMode::Bits32 || self.ctx.pse);
            if reserved_bits(self.ctx, &shape, raw, large) != 0 {
                self.problem(|| {
                    format!("{} {raw:#018x} at index {index} of {table} has reserved bits set", shape.level)
                });
                continue;
            }
            let pae_pdpt = self.ctx.mode == PagingMode::Pae && shape.level == super::Level::Pdpt;
            let p = if pae_pdpt {
                perms
            } else {
                Perms {
                    writable: perms.writable && flags.rw,
                    user: perms.user && flags.us,
                    executable: perms.executable && !flags.nx,
                }
            };
            let bits32 = self.ctx.mode == PagingMode::Bits32;
            if large || depth + 1 == self.levels.len() {
                let size = 1u64 << shape.shift;
                let frame = if bits32 {
                    if large {
                        (raw & 0xffc0_0000) | (((raw >> 13) & 0xff) << 32)
                    } else {
                        raw & 0xffff_f000
                    }
                } else {
                    raw & phys_mask(self.ctx) & !(size - 1)
                };
                self.emit(Mapping {
                    gva: Gva(va),
                    gpa: Gpa(frame),
                    size,
                    writable: p.writable,
                    user: p.user,
                    executable: p.executable,
                });
            } else {
                let next = Gpa(if bits32 { raw & 0xffff_f000 } else { raw & phys_mask(self.ctx) });
                if self.ancestors.contains(&next) {
                    self.problem(|| {
                        format!(
                            "loop: {} at index {index} of {table} points back to the table at {next}; not followed",
                            shape.level
                        )
                    });
                    continue;
                }
                if self.shared_reads >= MAX_SHARED_READS && self.listed.contains(&next.0) {
                    self.out.shared_not_followed += 1;
                    continue;
                }
                self.table(depth + 1, next, va, p);
            }
        }
        self.ancestors.pop();
    }

    fn emit(&mut self, m: Mapping) {
        if let Some(last) = self.out.mappings.last_mut() {
            let same = (last.writable, last.user, last.executable) == (m.writable, m.user, m.executable);
            if same && last.gva.0.wrapping_add(last.size) == m.gva.0 && last.gpa.0 + last.size == m.gpa.0 {
                last.size += m.size;
                return;
            }
        }
        self.out.mappings.push(m);
    }
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#018x}-{:#018x} -> {:#014x}  {:>10}  r{}{} {}",
            self.gva.0,
            self.gva.0.wrapping_add(self.size),
            self.gpa.0,
            human_size(self.size),
            if self.writable { "w" } else { "-" },
            if self.executable { "x" } else { "-" },
            if self.user { "user" } else { "supervisor" }
        )
    }
}

fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n => format!("{} KiB", n >> 10),
    }
}

impl fmt::Display for MappingList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.mappings {
            writeln!(f, "{m}")?;
        }
        write!(f, "{} range(s) from {} present entries", self.mappings.len(), self.entries_visited)?;
        if self.truncated {
            write!(
                f,
                " (stopped at the limit of {MAX_ENTRIES} present entries or {MAX_READS} entries read)"
            )?;
        }
        if self.shared_not_followed > 0 {
            write!(
                f,
                "\ntruncated: {} entries lead to page tables listed already and were not followed \
                 again (after {MAX_SHARED_READS} entries re-read in shared tables)",
                self.shared_not_followed
            )?;
        }
        for p in &self.problems {
            write!(f, "\nproblem: {p}")?;
        }
        Ok(())
    }
}
