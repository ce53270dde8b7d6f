//! Watchpoints, one engine for every frontend: what a watchpoint is, which accesses fire
//! it, how a range maps onto the debug registers, and — where the debug registers do not
//! fire for guest data accesses — how they are emulated.
//!
//! On PVM, KVM's instruction emulator runs CPL0 guest code and never checks DR0-DR3 for
//! data accesses (execute breakpoints do fire). A frontend then carries out a `continue` one
//! instruction at a time: before each step it works out every byte the instruction at RIP
//! will read or write ([`accesses`]), and after the step an access that overlaps a watched
//! range ([`first_hit`]) is reported exactly as the debug register would have: a trap
//! after the instruction, at the watchpoint's address. The gdb stub (`Z2`-`Z4`) and the
//! session's `watch` (with [`SoftWatches`]) both use it.

mod access;
mod pieces;

pub use access::accesses;
pub use pieces::{dr_pieces, WatchError, DR_SLOTS, MAX_WATCH_LEN};

use crate::DebuggerError;
use inspect::regs::{Regs, SpecialRegs};

/// The most software watchpoints a session keeps: 16. On PVM each one is matched against
/// every single-stepped instruction of `cont`; real hardware has four slots (DR0-DR3).
pub const MAX_SOFT_WATCHES: usize = 16;

/// Which accesses fire a watchpoint (gdb's `Z2`, `Z3`, `Z4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchKind {
    /// Writes.
    Write,
    /// Reads.
    Read,
    /// Reads and writes.
    ReadWrite,
}

/// A watchpoint: a range of guest-virtual bytes and the accesses that fire it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Which accesses fire it.
    pub kind: WatchKind,
}

/// One memory access of an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Linear address.
    pub addr: u64,
    /// Bytes.
    pub len: u64,
    /// It reads.
    pub read: bool,
    /// It writes (or may write).
    pub write: bool,
}

impl Watch {
    /// Whether `access` fires this watchpoint.
    pub fn fired_by(&self, access: &Access) -> bool {
        let kind_matches = match self.kind {
            WatchKind::Write => access.write,
            WatchKind::Read => access.read,
            WatchKind::ReadWrite => access.read || access.write,
        };
        let end = self.addr.saturating_add(self.len);
        let access_end = access.addr.saturating_add(access.len);
        kind_matches && access.addr < end && self.addr < access_end
    }
}

/// The memory accesses of the instruction at RIP of a vCPU stopped with `regs` and `sregs`,
/// read from `machine` in that vCPU's address space: what a software watchpoint is matched
/// against before the instruction is single-stepped (the gdb stub and the session both).
pub fn accesses_at_rip(machine: &vmm::machine::Machine, regs: &Regs, sregs: &SpecialRegs) -> Vec<Access> {
    let ctx = inspect::paging::PagingContext::from_sregs(sregs);
    let code = machine.read_virt_in(&ctx, inspect::Gva(regs.rip), crate::control::MAX_INSTRUCTION);
    accesses(&code, regs.rip, sregs.cpu_mode().bitness(), regs, sregs)
}

/// The first watchpoint any of `accesses` fires.
pub fn first_hit<'w>(watches: &'w [Watch], accesses: &[Access]) -> Option<&'w Watch> {
    watches.iter().find(|w| accesses.iter().any(|a| w.fired_by(a)))
}

/// A session's software write watchpoints, at most [`MAX_SOFT_WATCHES`].
#[derive(Debug, Default, Clone)]
pub struct SoftWatches(Vec<Watch>);

impl SoftWatches {
    /// Adds a write watchpoint on a range (a range already watched is not added twice).
    pub fn add(&mut self, addr: u64, len: u64) -> Result<(), DebuggerError> {
        let watch = Watch { addr, len, kind: WatchKind::Write };
        if self.0.contains(&watch) {
            return Ok(());
        }
        if self.0.len() >= MAX_SOFT_WATCHES {
            return Err(DebuggerError::TooManyWatches);
        }
        self.0.push(watch);
        Ok(())
    }

    /// Removes every watchpoint that starts at `addr`; whether there was one.
    pub fn remove(&mut self, addr: u64) -> bool {
        let before = self.0.len();
        self.0.retain(|w| w.addr != addr);
        self.0.len() != before
    }

    /// No ranges are watched.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The watchpoints, in the order they were set.
    pub fn watches(&self) -> &[Watch] {
        &self.0
    }
}

/// Bytes as a little-endian number (watched ranges are at most 8 bytes in a session and
/// [`MAX_WATCH_LEN`] in gdb; longer ranges keep their low 16 bytes).
pub fn little_endian(bytes: &[u8]) -> u128 {
    bytes.iter().take(16).rev().fold(0u128, |acc, x| (acc << 8) | u128::from(*x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_kept_once_and_the_list_is_bounded() {
        let mut w = SoftWatches::default();
        w.add(0x1000, 8).unwrap();
        w.add(0x1000, 8).unwrap();
        assert_eq!(w.watches(), [Watch { addr: 0x1000, len: 8, kind: WatchKind::Write }]);
        for i in 1..MAX_SOFT_WATCHES as u64 {
            w.add(0x1000 + i * 8, 8).unwrap();
        }
        let err = w.add(0x9000, 4).unwrap_err().to_string();
        assert!(err.contains("16 software watchpoints are set"), "{err}");
        assert!(w.remove(0x1000));
        assert!(!w.remove(0x1000));
        assert_eq!(w.watches().len(), MAX_SOFT_WATCHES - 1);
    }

    #[test]
    fn values_are_little_endian() {
        assert_eq!(little_endian(&[0x78, 0x56, 0x34, 0x12]), 0x1234_5678);
        assert_eq!(little_endian(&[]), 0);
        assert_eq!(little_endian(&[0xff; 20]), u128::MAX);
    }

    #[test]
    fn watch_matching() {
        let w = Watch { addr: 0x1000, len: 8, kind: WatchKind::Write };
        let write = |addr, len| Access { addr, len, read: false, write: true };
        assert!(w.fired_by(&write(0x1004, 1)));
        assert!(w.fired_by(&write(0xffc, 8)));
        assert!(!w.fired_by(&write(0x1008, 8)));
        assert!(!w.fired_by(&Access { addr: 0x1000, len: 8, read: true, write: false }));
        let r = Watch { kind: WatchKind::Read, ..w };
        assert!(r.fired_by(&Access { addr: 0x1000, len: 1, read: true, write: false }));
        assert!(!r.fired_by(&write(0x1000, 1)));
        let a = Watch { kind: WatchKind::ReadWrite, ..w };
        assert!(a.fired_by(&write(0x1000, 1)));
        assert_eq!(first_hit(&[r, w], &[write(0x1000, 1)]), Some(&w));
    }
}
