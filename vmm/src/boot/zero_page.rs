//! The Linux x86 64-bit boot protocol (the kernel's `Documentation/arch/x86/boot.rst`):
//! `struct boot_params`, the "zero page", holding the setup header, the command line and
//! initramfs pointers and the E820 memory map; the kernel is entered in long mode with
//! identity-mapped page tables and `RSI` pointing at it. vmscope uses it for a `vmlinux`
//! without a PVH note and for a bzImage (whose 64-bit entry is 0x200 past its load address,
//! and which then decompresses itself).

use super::pvh::{self, Module};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};

/// Where the zero page goes (below the legacy hole, clear of vmscope's other boot pages).
pub const ZERO_PAGE_GPA: u64 = 0x7000;
/// The boot stack (the kernel sets up its own almost at once).
pub const BOOT_STACK: u64 = 0x8ff0;
/// `boot_flag`: the 0xAA55 signature.
const BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// `header`: "HdrS".
const HDRS_MAGIC: u32 = 0x5372_6448;
/// `type_of_loader`: "undefined" (a boot loader without an assigned ID).
const LOADER_UNDEFINED: u8 = 0xff;
/// `kernel_alignment` when the kernel brings no setup header.
const KERNEL_ALIGNMENT: u32 = 0x0100_0000;
/// `initrd_addr_max` when the kernel brings no setup header (protocol 2.03+ default).
pub const INITRD_ADDR_MAX: u64 = 0x7fff_ffff;
/// Offset of the 64-bit entry point from a bzImage's protected-mode load address.
pub const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

/// The zero page for a kernel with `hdr` (a bzImage's setup header; `None` for a vmlinux),
/// `mem_size` bytes of RAM, the command line at `cmdline_gpa`, and the initramfs.
pub fn boot_params(
    hdr: Option<setup_header>,
    mem_size: u64,
    cmdline_gpa: u64,
    cmdline_len: usize,
    initrd: Option<Module>,
) -> boot_params {
    let mut p = boot_params::default();
    if let Some(h) = hdr {
        p.hdr = h;
    } else {
        p.hdr.kernel_alignment = KERNEL_ALIGNMENT;
    }
    p.hdr.boot_flag = BOOT_FLAG_MAGIC;
    p.hdr.header = HDRS_MAGIC;
    p.hdr.type_of_loader = LOADER_UNDEFINED;
    p.hdr.cmd_line_ptr = cmdline_gpa as u32;
    p.hdr.cmdline_size = cmdline_len as u32;
    if let Some(m) = initrd {
        p.hdr.ramdisk_image = m.paddr as u32;
        p.hdr.ramdisk_size = m.size as u32;
    }
    let map = pvh::memory_map(mem_size);
    for (slot, e) in p.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry { addr: e.addr, size: e.size, r#type: e.type_ };
    }
    p.e820_entries = map.len().min(p.e820_table.len()) as u8;
    p
}

/// The highest address (exclusive) an initramfs may end at for a kernel with `hdr`.
pub fn initrd_limit(hdr: Option<&setup_header>) -> u64 {
    let max = hdr.map_or(INITRD_ADDR_MAX, |h| match h.initrd_addr_max {
        0 => INITRD_ADDR_MAX,
        m => u64::from(m),
    });
    max + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_page_fields() {
        let initrd = Module { paddr: 0x300_0000, size: 0x1234 };
        let p = boot_params(None, 256 << 20, 0x2_0000, 42, Some(initrd));
        let (flag, magic, loader) = (p.hdr.boot_flag, p.hdr.header, p.hdr.type_of_loader);
        assert_eq!((flag, magic, loader), (0xaa55, 0x5372_6448, 0xff));
        let (cmd, len, image, size) =
            (p.hdr.cmd_line_ptr, p.hdr.cmdline_size, p.hdr.ramdisk_image, p.hdr.ramdisk_size);
        assert_eq!((cmd, len, image, size), (0x2_0000, 42, 0x300_0000, 0x1234));
        assert_eq!(p.e820_entries, 3);
        let (a0, s0, t0) = (p.e820_table[0].addr, p.e820_table[0].size, p.e820_table[0].r#type);
        assert_eq!((a0, s0, t0), (0, pvh::layout::EBDA_START, pvh::E820_RAM));
        let last = p.e820_table[2];
        let (addr, size) = (last.addr, last.size);
        assert_eq!(addr + size, 256 << 20);
        assert_eq!(std::mem::size_of::<boot_params>(), 4096);
    }

    #[test]
    fn keeps_a_bzimage_header_and_its_initrd_limit() {
        let hdr = setup_header { version: 0x20f, initrd_addr_max: 0x3fff_ffff, ..Default::default() };
        let p = boot_params(Some(hdr), 64 << 20, 0x2_0000, 1, None);
        let version = p.hdr.version;
        assert_eq!(version, 0x20f);
        assert_eq!(initrd_limit(Some(&hdr)), 0x4000_0000);
        assert_eq!(initrd_limit(None), 0x8000_0000);
    }
}
