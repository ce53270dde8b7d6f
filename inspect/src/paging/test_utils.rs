//! Building page tables in a byte buffer for tests.

use crate::addr::Gpa;
use crate::mem::BufferMemory;

/// Present.
pub const P: u64 = 1;
/// Writable.
pub const RW: u64 = 1 << 1;
/// User.
pub const US: u64 = 1 << 2;
/// Page size.
pub const PS: u64 = 1 << 7;
/// No-execute.
pub const NX: u64 = 1 << 63;

/// A guest memory with a bump allocator for 4 KiB tables starting at 0x1000.
pub struct TableBuilder {
    /// The memory.
    pub mem: BufferMemory,
    next: u64,
}

impl TableBuilder {
    /// `size` bytes of zeroed memory.
    pub fn new(size: usize) -> Self {
        Self { mem: BufferMemory::zeroed(size), next: 0x1000 }
    }

    /// A fresh zeroed table.
    pub fn table(&mut self) -> Gpa {
        let t = Gpa(self.next);
        self.next += 0x1000;
        t
    }

    /// Writes a 64-bit entry.
    pub fn set(&mut self, table: Gpa, index: u64, value: u64) {
        self.mem.write_u64(Gpa(table.0 + index * 8), value);
    }

    /// Writes a 32-bit entry.
    pub fn set32(&mut self, table: Gpa, index: u64, value: u32) {
        self.mem.write(Gpa(table.0 + index * 4), &value.to_le_bytes());
    }
}
