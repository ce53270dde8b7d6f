//! Guest memory: anonymous host mappings (vm-memory's `GuestMemoryMmap`) that KVM sees as
//! guest-physical RAM, and the view of them that `inspect` reads through.

use inspect::{Gpa, GuestPhysMemory, HostAddr};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Guest memory as vmscope uses it.
pub type GuestMemory = GuestMemoryMmap<()>;

/// Guest RAM must stay below this address: the 32-bit MMIO hole (devices, LAPIC, IOAPIC)
/// starts here.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;

/// The smallest guest memory vmscope accepts.
pub const MIN_MEM_SIZE: u64 = 4 << 20;

/// Errors from creating or accessing guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The requested size is outside what vmscope supports.
    #[error("guest memory of {mib} MiB is not supported: choose between {} and {} MiB", MIN_MEM_SIZE >> 20, MMIO_HOLE_START >> 20)]
    BadSize {
        /// The requested size in MiB.
        mib: u64,
    },
    /// mmap of the guest memory failed.
    #[error("cannot map {mib} MiB of guest memory")]
    Mmap {
        /// The requested size in MiB.
        mib: u64,
        /// The mmap failure (usually ENOMEM or a memory limit).
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
    /// A snapshot's memory could not be mapped from its file.
    #[error("cannot map {mib} MiB of guest memory from the snapshot file at offset {offset}")]
    MapFile {
        /// The size in MiB.
        mib: u64,
        /// Where the memory starts in the file.
        offset: u64,
        /// mmap's or vm-memory's refusal.
        #[source]
        source: std::io::Error,
    },
    /// A guest-physical access fell outside guest memory.
    #[error("guest-physical range {gpa}+{len:#x} is outside guest memory")]
    OutOfRange {
        /// Start of the access.
        gpa: Gpa,
        /// Length of the access.
        len: usize,
    },
}

/// Maps `size` bytes of guest RAM at guest-physical address 0.
pub fn create_guest_memory(size: u64) -> Result<GuestMemory, MemoryError> {
    let mib = size >> 20;
    if !(MIN_MEM_SIZE..=MMIO_HOLE_START).contains(&size) || !size.is_multiple_of(2 << 20) {
        return Err(MemoryError::BadSize { mib });
    }
    GuestMemory::from_ranges(&[(GuestAddress(0), size as usize)])
        .map_err(|source| MemoryError::Mmap { mib, source })
}

/// Maps `size` bytes of `file` from `offset` as guest RAM at guest-physical 0, private
/// (copy-on-write): pages are read from the file's page cache when first touched and a
/// guest write copies only that page, never changing the file. `offset` must be a page
/// multiple and the file at least `offset + size` long. How a snapshot's memory is restored.
pub fn map_guest_memory_file(
    file: &std::fs::File,
    offset: u64,
    size: u64,
) -> Result<GuestMemory, MemoryError> {
    let mib = size >> 20;
    if !(MIN_MEM_SIZE..=MMIO_HOLE_START).contains(&size) || !size.is_multiple_of(2 << 20) {
        return Err(MemoryError::BadSize { mib });
    }
    let mapped = |source: std::io::Error| MemoryError::MapFile { mib, offset, source };
    let file = file.try_clone().map_err(mapped)?;
    let region = vm_memory::mmap::MmapRegionBuilder::new(size as usize)
        .with_file_offset(vm_memory::FileOffset::new(file, offset))
        .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
        .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
        .build()
        .map_err(|e| mapped(std::io::Error::other(e.to_string())))?;
    let region = vm_memory::GuestRegionMmap::new(region, GuestAddress(0))
        .ok_or_else(|| mapped(std::io::Error::other("the region wraps the address space")))?;
    GuestMemory::from_regions(vec![region]).map_err(|e| mapped(std::io::Error::other(e.to_string())))
}

/// Total guest RAM in bytes.
pub fn mem_size(mem: &GuestMemory) -> u64 {
    mem.iter().map(|r| r.len()).sum()
}

/// Writes `data` at `gpa`, all or nothing.
pub fn write_phys(mem: &GuestMemory, gpa: Gpa, data: &[u8]) -> Result<(), MemoryError> {
    mem.write_slice(data, GuestAddress(gpa.0)).map_err(|_| MemoryError::OutOfRange { gpa, len: data.len() })
}

/// Reads exactly `buf.len()` bytes at `gpa`.
pub fn read_phys_exact(mem: &GuestMemory, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemoryError> {
    let len = buf.len();
    if PhysView(mem).read_phys(gpa, buf) == len {
        Ok(())
    } else {
        Err(MemoryError::OutOfRange { gpa, len })
    }
}

/// Reads guest memory for `inspect` (partial reads stop at the first unbacked byte).
#[derive(Clone, Copy, Debug)]
pub struct PhysView<'a>(pub &'a GuestMemory);

impl GuestPhysMemory for PhysView<'_> {
    fn read_phys(&self, gpa: Gpa, buf: &mut [u8]) -> usize {
        let mut done = 0;
        // Region by region, so a read that runs off the end of RAM returns what was there.
        while done < buf.len() {
            let Some(addr) = gpa.0.checked_add(done as u64) else {
                break;
            };
            let Some(region) = self.0.find_region(GuestAddress(addr)) else {
                break;
            };
            let region_left = region.last_addr().0 - addr + 1;
            let n = (buf.len() - done).min(usize::try_from(region_left).unwrap_or(usize::MAX));
            match self.0.read(&mut buf[done..done + n], GuestAddress(addr)) {
                Ok(0) | Err(_) => break,
                Ok(read) => done += read,
            }
        }
        done
    }

    fn host_addr(&self, gpa: Gpa) -> Option<HostAddr> {
        self.0.get_host_address(GuestAddress(gpa.0)).ok().map(|p| HostAddr(p as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked() {
        assert!(matches!(create_guest_memory(1 << 20), Err(MemoryError::BadSize { mib: 1 })));
        assert!(create_guest_memory(4 << 30).is_err());
        let mem = create_guest_memory(8 << 20).unwrap();
        assert_eq!(mem_size(&mem), 8 << 20);
    }

    #[test]
    fn reads_past_the_end_are_partial() {
        let mem = create_guest_memory(4 << 20).unwrap();
        write_phys(&mem, Gpa((4 << 20) - 4), &[1, 2, 3, 4]).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(PhysView(&mem).read_phys(Gpa((4 << 20) - 4), &mut buf), 4);
        assert_eq!(&buf[..4], &[1, 2, 3, 4]);
        assert_eq!(PhysView(&mem).read_phys(Gpa(4 << 20), &mut buf), 0);
        assert!(write_phys(&mem, Gpa((4 << 20) - 2), &[0; 4]).is_err());
        assert!(PhysView(&mem).host_addr(Gpa(0x1000)).is_some());
    }
}
