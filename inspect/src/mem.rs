//! How inspect reads a guest: a small trait over guest-physical memory, so every reader
//! here works the same on a live VM, a saved snapshot, or a byte buffer in a test.

use crate::addr::{Gpa, HostAddr};

/// Read access to guest-physical memory.
pub trait GuestPhysMemory {
    /// Copies guest-physical bytes starting at `gpa` into `buf` and returns how many bytes
    /// were readable (a prefix of `buf`); reading stops at the first byte that is not
    /// backed by guest memory.
    fn read_phys(&self, gpa: Gpa, buf: &mut [u8]) -> usize;

    /// The host address that backs `gpa`, when the memory is mapped into this process.
    fn host_addr(&self, _gpa: Gpa) -> Option<HostAddr> {
        None
    }

    /// Reads a little-endian `u64` at `gpa`, or `None` if any byte of it is unbacked.
    fn read_u64(&self, gpa: Gpa) -> Option<u64> {
        let mut b = [0u8; 8];
        (self.read_phys(gpa, &mut b) == 8).then(|| u64::from_le_bytes(b))
    }

    /// Reads a little-endian `u32` at `gpa`, or `None` if any byte of it is unbacked.
    fn read_u32(&self, gpa: Gpa) -> Option<u32> {
        let mut b = [0u8; 4];
        (self.read_phys(gpa, &mut b) == 4).then(|| u32::from_le_bytes(b))
    }

    /// Reads a little-endian `u16` at `gpa`, or `None` if any byte of it is unbacked.
    fn read_u16(&self, gpa: Gpa) -> Option<u16> {
        let mut b = [0u8; 2];
        (self.read_phys(gpa, &mut b) == 2).then(|| u16::from_le_bytes(b))
    }
}

/// Guest memory as one byte buffer starting at a base GPA (tests, snapshots).
#[derive(Clone, Debug, Default)]
pub struct BufferMemory {
    /// GPA of `bytes[0]`.
    pub base: Gpa,
    /// The memory's contents.
    pub bytes: Vec<u8>,
}

impl BufferMemory {
    /// `size` zero bytes starting at GPA 0.
    pub fn zeroed(size: usize) -> Self {
        Self { base: Gpa(0), bytes: vec![0; size] }
    }

    /// Writes `data` at `gpa`; panics if it does not fit (test fixture helper).
    pub fn write(&mut self, gpa: Gpa, data: &[u8]) {
        let off = (gpa.0 - self.base.0) as usize;
        self.bytes[off..off + data.len()].copy_from_slice(data);
    }

    /// Writes a little-endian `u64` at `gpa`; panics if it does not fit.
    pub fn write_u64(&mut self, gpa: Gpa, v: u64) {
        self.write(gpa, &v.to_le_bytes());
    }
}

impl GuestPhysMemory for BufferMemory {
    fn read_phys(&self, gpa: Gpa, buf: &mut [u8]) -> usize {
        let Some(off) = gpa.0.checked_sub(self.base.0) else {
            return 0;
        };
        let Ok(off) = usize::try_from(off) else {
            return 0;
        };
        if off >= self.bytes.len() {
            return 0;
        }
        // No byte lies past the top of the address space, even when `base + bytes.len()`
        // does (a snapshot or test buffer placed at the very top).
        let to_top = usize::try_from(u64::MAX - gpa.0).map_or(usize::MAX, |n| n.saturating_add(1));
        let n = buf.len().min(self.bytes.len() - off).min(to_top);
        buf[..n].copy_from_slice(&self.bytes[off..off + n]);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_reads_are_a_prefix() {
        let mut m = BufferMemory::zeroed(16);
        m.write(Gpa(12), &[1, 2, 3, 4]);
        let mut b = [0xffu8; 8];
        assert_eq!(m.read_phys(Gpa(12), &mut b), 4);
        assert_eq!(&b[..4], &[1, 2, 3, 4]);
        assert_eq!(m.read_phys(Gpa(16), &mut b), 0);
        assert_eq!(m.read_u64(Gpa(12)), None);
        assert_eq!(m.read_u32(Gpa(12)), Some(0x0403_0201));
    }

    /// Found by fuzzing (fuzz/regressions/virtqueue/memory-past-top-of-address-space): a
    /// buffer whose end lies past 2^64 - 1 has no bytes there, so a reader that checked a
    /// range never computes an address that wraps.
    #[test]
    fn no_byte_past_the_top_of_the_address_space() {
        let m = BufferMemory { base: Gpa(u64::MAX - 7), bytes: vec![7; 0x100] };
        let mut b = [0u8; 16];
        assert_eq!(m.read_phys(Gpa(u64::MAX - 7), &mut b), 8);
        assert_eq!(m.read_phys(Gpa(u64::MAX), &mut b), 1);
        assert_eq!(m.read_u64(Gpa(u64::MAX - 7)), Some(0x0707_0707_0707_0707));
        assert_eq!(m.read_u16(Gpa(u64::MAX)), None);
    }
}
