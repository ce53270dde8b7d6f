//! Software breakpoints: an `int3` (0xCC) written over the first byte of an instruction in
//! guest memory, with the original byte kept here. Keyed by guest-virtual address (what RIP
//! shows); the guest-physical address is where the byte actually lives.
//!
//! The table is shared by all vCPUs of a VM; per-vCPU stepping and debug registers live
//! with the vCPU (`vstate::vcpu`), and the machine-wide debug operations in `machine`.

use crate::vstate::memory::{read_phys_exact, write_phys, GuestMemory};
use inspect::{Gpa, Gva};
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

const INT3: u8 = 0xcc;

/// How many software breakpoints a VM holds at once (gdb's own default is unbounded; a
/// client placing more is refused with [`BreakpointError::TooMany`] instead of growing the
/// table for as long as it asks). The four hardware ones are bounded by DR0-DR3.
pub const MAX_SW_BREAKPOINTS: usize = 64;

/// Errors from breakpoint management.
#[derive(Debug, thiserror::Error)]
pub enum BreakpointError {
    /// The breakpoint's byte is not in guest memory.
    #[error("cannot place a breakpoint at {gva} ({gpa}): not in guest memory")]
    OutOfMemory {
        /// Where it was asked for.
        gva: Gva,
        /// Where that is.
        gpa: Gpa,
    },
    /// No breakpoint at that address.
    #[error("no breakpoint at {0}")]
    NotFound(Gva),
    /// The table is full.
    #[error("cannot place a breakpoint at {gva}: {limit} software breakpoints are set, the limit; delete one first")]
    TooMany {
        /// Where it was asked for.
        gva: Gva,
        /// [`MAX_SW_BREAKPOINTS`].
        limit: usize,
    },
}

#[derive(Clone, Copy, Debug)]
struct SwBreakpoint {
    gpa: Gpa,
    original: u8,
    armed: bool,
}

/// The VM's software breakpoints.
#[derive(Debug)]
pub struct Breakpoints {
    mem: GuestMemory,
    table: Mutex<BTreeMap<u64, SwBreakpoint>>,
}

impl Breakpoints {
    /// An empty table over `mem`.
    pub fn new(mem: GuestMemory) -> Self {
        Self { mem, table: Mutex::new(BTreeMap::new()) }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, SwBreakpoint>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Places a breakpoint at `gva`, whose byte lives at `gpa`. Inserting twice is a no-op.
    pub fn insert(&self, gva: Gva, gpa: Gpa) -> Result<(), BreakpointError> {
        let mut table = self.table();
        if table.contains_key(&gva.0) {
            return Ok(());
        }
        if table.len() >= MAX_SW_BREAKPOINTS {
            return Err(BreakpointError::TooMany { gva, limit: MAX_SW_BREAKPOINTS });
        }
        let mut original = [0u8];
        read_phys_exact(&self.mem, gpa, &mut original)
            .map_err(|_| BreakpointError::OutOfMemory { gva, gpa })?;
        write_phys(&self.mem, gpa, &[INT3]).map_err(|_| BreakpointError::OutOfMemory { gva, gpa })?;
        table.insert(gva.0, SwBreakpoint { gpa, original: original[0], armed: true });
        Ok(())
    }

    /// Removes the breakpoint at `gva`, restoring the original byte.
    pub fn remove(&self, gva: Gva) -> Result<(), BreakpointError> {
        let bp = self.table().remove(&gva.0).ok_or(BreakpointError::NotFound(gva))?;
        if bp.armed {
            let _ = write_phys(&self.mem, bp.gpa, &[bp.original]);
        }
        Ok(())
    }

    /// Removes every breakpoint.
    pub fn clear(&self) {
        let gvas: Vec<u64> = self.table().keys().copied().collect();
        for gva in gvas {
            let _ = self.remove(Gva(gva));
        }
    }

    /// Whether there is a breakpoint at `gva`.
    pub fn contains(&self, gva: u64) -> bool {
        self.table().contains_key(&gva)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.table().is_empty()
    }

    /// The breakpoint addresses.
    pub fn list(&self) -> Vec<Gva> {
        self.table().keys().map(|&g| Gva(g)).collect()
    }

    /// Restores the original byte while a vCPU steps over the breakpoint; true if done.
    pub fn disarm(&self, gva: u64) -> bool {
        let mut table = self.table();
        match table.get_mut(&gva) {
            Some(bp) if bp.armed => {
                bp.armed = write_phys(&self.mem, bp.gpa, &[bp.original]).is_err();
                !bp.armed
            }
            _ => false,
        }
    }

    /// Writes the `int3` back after a step-over.
    pub fn rearm(&self, gva: u64) {
        let mut table = self.table();
        if let Some(bp) = table.get_mut(&gva) {
            if !bp.armed {
                bp.armed = write_phys(&self.mem, bp.gpa, &[INT3]).is_ok();
            }
        }
    }

    /// Guest memory was overwritten with the guest's own bytes where `written` says (a
    /// checkpoint's rewind): each breakpoint there takes the byte now there as its original
    /// and gets its `int3` back.
    pub fn rewritten(&self, written: impl Fn(Gpa) -> bool) {
        for bp in self.table().values_mut().filter(|bp| written(bp.gpa)) {
            let mut now = [0u8];
            if read_phys_exact(&self.mem, bp.gpa, &mut now).is_ok() {
                bp.original = now[0];
                bp.armed = write_phys(&self.mem, bp.gpa, &[INT3]).is_ok();
            }
        }
    }

    /// Replaces our `int3` bytes in `buf` (read from guest-physical `gpa`) with the original
    /// bytes, so debuggers and disassembly see the guest's code.
    pub fn hide_in(&self, gpa: Gpa, buf: &mut [u8]) {
        let end = gpa.0.saturating_add(buf.len() as u64);
        for bp in self.table().values() {
            if bp.armed && bp.gpa.0 >= gpa.0 && bp.gpa.0 < end {
                buf[(bp.gpa.0 - gpa.0) as usize] = bp.original;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::create_guest_memory;

    #[test]
    fn insert_hide_step_over_remove() {
        let mem = create_guest_memory(4 << 20).unwrap();
        write_phys(&mem, Gpa(0x1000), &[0x90, 0x48, 0x89]).unwrap();
        let bps = Breakpoints::new(mem.clone());
        bps.insert(Gva(0xffff_1001), Gpa(0x1001)).unwrap();
        let mut b = [0u8; 3];
        read_phys_exact(&mem, Gpa(0x1000), &mut b).unwrap();
        assert_eq!(b, [0x90, INT3, 0x89]);
        bps.hide_in(Gpa(0x1000), &mut b);
        assert_eq!(b, [0x90, 0x48, 0x89]);
        assert!(bps.disarm(0xffff_1001));
        read_phys_exact(&mem, Gpa(0x1001), &mut b[..1]).unwrap();
        assert_eq!(b[0], 0x48);
        bps.rearm(0xffff_1001);
        read_phys_exact(&mem, Gpa(0x1001), &mut b[..1]).unwrap();
        assert_eq!(b[0], INT3);
        bps.remove(Gva(0xffff_1001)).unwrap();
        read_phys_exact(&mem, Gpa(0x1001), &mut b[..1]).unwrap();
        assert_eq!(b[0], 0x48);
        assert!(matches!(bps.remove(Gva(1)), Err(BreakpointError::NotFound(_))));
        assert!(matches!(bps.insert(Gva(1), Gpa(8 << 20)), Err(BreakpointError::OutOfMemory { .. })));
    }

    #[test]
    fn the_table_is_bounded() {
        let mem = create_guest_memory(4 << 20).unwrap();
        let bps = Breakpoints::new(mem.clone());
        for i in 0..MAX_SW_BREAKPOINTS as u64 {
            bps.insert(Gva(0x1000 + i), Gpa(0x1000 + i)).unwrap();
        }
        // Placing one that is already set is still fine; a new one is refused, untouched.
        bps.insert(Gva(0x1000), Gpa(0x1000)).unwrap();
        let next = 0x1000 + MAX_SW_BREAKPOINTS as u64;
        let err = bps.insert(Gva(next), Gpa(next)).unwrap_err();
        assert!(matches!(err, BreakpointError::TooMany { limit: MAX_SW_BREAKPOINTS, .. }), "{err}");
        assert!(err.to_string().contains("64 software breakpoints"), "{err}");
        let mut b = [0u8];
        read_phys_exact(&mem, Gpa(next), &mut b).unwrap();
        assert_eq!(b[0], 0);
        assert_eq!(bps.list().len(), MAX_SW_BREAKPOINTS);
        // Removing one makes room again.
        bps.remove(Gva(0x1000)).unwrap();
        bps.insert(Gva(next), Gpa(next)).unwrap();
    }
}
