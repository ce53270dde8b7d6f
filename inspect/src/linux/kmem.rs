//! Kernel-virtual to guest-physical without walking page tables: the kernel image is mapped
//! at `__START_KERNEL_map + phys_base`, and all RAM at `PAGE_OFFSET` (the direct map), on
//! x86-64 since 2.6. Anything else a kernel pointer holds (vmalloc, modules, user space) is
//! not where the structures read here live, so it is refused as corrupt.

use super::{Kernel, LinuxError};
use crate::addr::{Gpa, Gva};
use crate::mem::GuestPhysMemory;
use crate::paging::{self, PagingContext};

/// Where the kernel image is mapped (`__START_KERNEL_map`).
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// The image mapping's size (`KERNEL_IMAGE_SIZE` with KASLR's 1 GiB).
pub const KERNEL_IMAGE_SIZE: u64 = 1 << 30;
/// The direct map's base with 4-level paging and no KASLR (`__PAGE_OFFSET_BASE_L4`).
pub const PAGE_OFFSET_4LEVEL: u64 = 0xffff_8880_0000_0000;
/// The direct map's size (64 TiB, `MAX_PHYSMEM_BITS` 46 with 4-level paging).
pub const DIRECT_MAP_SIZE: u64 = 1 << 46;

/// Guest-physical memory read through the kernel's fixed mappings.
pub struct KernelMemory<'a> {
    mem: &'a dyn GuestPhysMemory,
    kernel: &'a Kernel,
    phys_base: u64,
    page_offset: u64,
}

impl<'a> KernelMemory<'a> {
    /// Reads `mem` as the kernel `kernel` maps it, loaded `phys_base` bytes above its link
    /// address (0 for a vmlinux loaded where it was linked, as vmscope and QEMU load it).
    pub fn new(mem: &'a dyn GuestPhysMemory, kernel: &'a Kernel, phys_base: u64) -> Self {
        let mut k = Self { mem, kernel, phys_base, page_offset: PAGE_OFFSET_4LEVEL };
        // With a dynamic layout the direct map's base is a variable in the image.
        if let Some(v) =
            k.kernel.globals.page_offset_base.and_then(|a| k.read_u64("page_offset_base", a).ok())
        {
            if (0xffff_8000_0000_0000..START_KERNEL_MAP).contains(&v) {
                k.page_offset = v;
            }
        }
        k
    }

    /// Like [`KernelMemory::new`], with `phys_base` found by walking `ctx`'s page tables to
    /// `init_task` (a relocated kernel); 0 when the walk fails (paging not on yet).
    pub fn with_paging(mem: &'a dyn GuestPhysMemory, kernel: &'a Kernel, ctx: &PagingContext) -> Self {
        let va = kernel.globals.init_task;
        let phys_base = paging::translate(mem, ctx, Gva(va))
            .ok()
            .and_then(|t| t.gpa.0.checked_sub(va.wrapping_sub(START_KERNEL_MAP)))
            .unwrap_or(0);
        Self::new(mem, kernel, phys_base)
    }

    /// The kernel whose structures are read.
    pub fn kernel(&self) -> &Kernel {
        self.kernel
    }

    /// The guest-physical memory underneath.
    pub fn phys(&self) -> &dyn GuestPhysMemory {
        self.mem
    }

    /// Whether `va` lies in the direct map.
    pub fn in_direct_map(&self, va: u64) -> bool {
        va.wrapping_sub(self.page_offset) < DIRECT_MAP_SIZE && va >= self.page_offset
    }

    /// Whether `va` lies in the kernel image's mapping.
    pub fn in_image(&self, va: u64) -> bool {
        va >= START_KERNEL_MAP && va - START_KERNEL_MAP < KERNEL_IMAGE_SIZE
    }

    /// The guest-physical address of kernel-virtual `va` (`what` names it in errors).
    pub fn to_gpa(&self, what: &str, va: u64) -> Result<u64, LinuxError> {
        let gpa = if self.in_image(va) {
            (va - START_KERNEL_MAP).checked_add(self.phys_base)
        } else if self.in_direct_map(va) {
            Some(va - self.page_offset)
        } else {
            None
        };
        gpa.ok_or_else(|| LinuxError::NotKernelAddress { what: what.into(), addr: va })
    }

    /// Reads `buf.len()` bytes at kernel-virtual `va`, all or an error.
    pub fn read(&self, what: &str, va: u64, buf: &mut [u8]) -> Result<(), LinuxError> {
        let gpa = self.to_gpa(what, va)?;
        // A range that leaves the mapping it started in is not one object.
        let end = va.checked_add(buf.len().saturating_sub(1) as u64);
        if end
            .is_none_or(|e| self.to_gpa(what, e).ok() != gpa.checked_add(buf.len().saturating_sub(1) as u64))
        {
            return Err(LinuxError::NotKernelAddress { what: what.into(), addr: va });
        }
        if self.mem.read_phys(Gpa(gpa), buf) != buf.len() {
            return Err(LinuxError::Unreadable { what: what.into(), addr: va, gpa, len: buf.len() });
        }
        Ok(())
    }

    /// A little-endian `u64` at `va`.
    pub fn read_u64(&self, what: &str, va: u64) -> Result<u64, LinuxError> {
        let mut b = [0u8; 8];
        self.read(what, va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// A little-endian `u32` at `va`.
    pub fn read_u32(&self, what: &str, va: u64) -> Result<u32, LinuxError> {
        let mut b = [0u8; 4];
        self.read(what, va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// A little-endian `u16` at `va`.
    pub fn read_u16(&self, what: &str, va: u64) -> Result<u16, LinuxError> {
        let mut b = [0u8; 2];
        self.read(what, va, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// A NUL-terminated string of at most `max` bytes at `va` (lossy UTF-8).
    pub fn read_cstr(&self, what: &str, va: u64, max: usize) -> Result<String, LinuxError> {
        let mut b = vec![0u8; max];
        self.read(what, va, &mut b)?;
        let n = b.iter().position(|&c| c == 0).unwrap_or(max);
        Ok(String::from_utf8_lossy(&b[..n]).into_owned())
    }
}
