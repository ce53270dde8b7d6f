//! Changes to the boot page tables the VMM built (`vmscope_abi::layout`): identity-mapped
//! 2 MiB pages, PML4 → PDPT → one page directory per GiB. The guest may write them at
//! either CPL (at CPL3 every page is a user page); a new mapping of a page that was not
//! present needs no TLB flush.

use vmscope_abi::layout::PDPT_GPA;

/// Present, writable, user (copied from the PDPT entry), 2 MiB page, cache-disable,
/// write-through.
const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const PWT: u64 = 8;
const PCD: u64 = 0x10;
const PS: u64 = 0x80;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const GIB: u64 = 1 << 30;

fn read(addr: u64) -> u64 {
    // SAFETY: page tables are identity-mapped guest memory.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn write(addr: u64, v: u64) {
    // SAFETY: as above; the hostile workloads change mappings on purpose.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}

/// The PDPT entry that maps the GiB of `va`.
pub fn pdpt_entry_addr(va: u64) -> u64 {
    PDPT_GPA + (va / GIB) * 8
}

/// The U/S bit the boot tables use (set when the guest runs at CPL3).
fn user_bit() -> u64 {
    read(PDPT_GPA) & US
}

/// Maps the 2 MiB page at `gpa` (identity, uncached) in an existing page directory.
pub fn map_mmio_2m(gpa: u64) -> Result<(), &'static [u8]> {
    map_2m(gpa, gpa)
}

/// Maps virtual `va`'s 2 MiB page to physical `pa` (uncached): the page directory of
/// `va`'s GiB must exist (the VMM builds one for memory and one for the MMIO probe's GiB).
pub fn map_2m(va: u64, pa: u64) -> Result<(), &'static [u8]> {
    let pdpte = read(pdpt_entry_addr(va));
    if pdpte & P == 0 || va >= 512 * GIB {
        return Err(b"no page directory for that GiB in the boot page tables");
    }
    let pd = pdpte & ADDR_MASK;
    let index = (va % GIB) >> 21;
    write(pd + index * 8, (pa & !((1 << 21) - 1)) | P | RW | user_bit() | PS | PCD | PWT);
    Ok(())
}

/// Points the PDPT entry of `va`'s GiB at a page directory at `table` (wherever that is).
pub fn set_pdpt_entry(va: u64, table: u64) {
    write(pdpt_entry_addr(va), (table & ADDR_MASK) | P | RW | user_bit());
}
