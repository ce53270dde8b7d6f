//! Boot for guests that follow vmscope's entry contract (see the `vmscope-abi` crate):
//! the VMM builds the GDT, TSS, identity page tables and `BootInfo` below 1 MiB, loads the
//! ELF above it, and starts the boot vCPU in 64-bit mode at the chosen CPL.

use crate::arch::x86_64::paging::{identity_map, PagingError};
use crate::arch::x86_64::regs::LongModeEntry;
use crate::arch::x86_64::{gdt, Ring};
use crate::loader::{load_elf, LoadedElf, LoaderError};
use crate::vstate::memory::{mem_size, write_phys, GuestMemory, MemoryError};
use inspect::Gpa;
use vm_memory::ByteValued;
use vmscope_abi::{layout, BootInfo, BOOT_MAGIC};

/// Stack the VMM leaves at the top of guest memory.
pub const STACK_SIZE: u64 = 256 << 10;

/// Errors from laying out an ELF guest.
#[derive(Debug, thiserror::Error)]
pub enum ElfBootError {
    /// The ELF.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// The page tables.
    #[error(transparent)]
    Paging(#[from] PagingError),
    /// Writing boot structures.
    #[error("cannot write the boot structures")]
    Memory(#[from] MemoryError),
    /// The command line is too long.
    #[error("the guest command line is {len} bytes; at most {} fit", layout::CMDLINE_MAX - 1)]
    CmdlineTooLong {
        /// Its length.
        len: usize,
    },
}

#[derive(Clone, Copy, Default)]
#[repr(transparent)]
struct BootInfoBytes(BootInfo);
// SAFETY: `BootInfo` is `repr(C)` with u64 fields followed by two u32 fields: no padding,
// and every bit pattern is valid.
unsafe impl ByteValued for BootInfoBytes {}

/// What an ELF guest was given.
#[derive(Clone, Copy, Debug)]
pub struct ElfGuestLayout {
    /// The loaded ELF.
    pub elf: LoadedElf,
    /// The boot vCPU's entry state.
    pub entry: LongModeEntry,
    /// The boot information handed to the guest.
    pub boot_info: BootInfo,
}

/// Loads `elf` (named `name` in errors) and writes the boot structures for a guest at `ring`.
pub fn setup(
    mem: &GuestMemory,
    name: &str,
    elf: &[u8],
    cmdline: &str,
    ring: Ring,
    nr_vcpus: u32,
) -> Result<ElfGuestLayout, ElfBootError> {
    let size = mem_size(mem);
    if cmdline.len() as u64 >= layout::CMDLINE_MAX {
        return Err(ElfBootError::CmdlineTooLong { len: cmdline.len() });
    }
    let free_end = size - STACK_SIZE;
    let loaded = load_elf(mem, name, elf, free_end)?;

    let gdt_bytes: Vec<u8> = gdt::gdt_entries().iter().flat_map(|e| e.to_le_bytes()).collect();
    write_phys(mem, Gpa(layout::GDT_GPA), &gdt_bytes)?;
    write_phys(mem, Gpa(layout::TSS_GPA), &gdt::tss_image())?;
    let tables = identity_map(size, ring == Ring::Ring3)?;
    for (gpa, bytes) in tables.bytes() {
        write_phys(mem, gpa, &bytes)?;
    }
    let mut cmd = cmdline.as_bytes().to_vec();
    cmd.push(0);
    write_phys(mem, Gpa(layout::CMDLINE_GPA), &cmd)?;
    let boot_info = BootInfo {
        magic: BOOT_MAGIC,
        mem_size: size,
        cmdline_gpa: layout::CMDLINE_GPA,
        cmdline_len: cmdline.len() as u64,
        free_start: loaded.end.next_multiple_of(0x1000),
        free_end,
        ring: u32::from(ring.cpl()),
        nr_vcpus,
    };
    write_phys(mem, Gpa(layout::BOOT_INFO_GPA), BootInfoBytes(boot_info).as_slice())?;
    let entry = LongModeEntry {
        entry: loaded.entry,
        stack: size - 8,
        arg: layout::BOOT_INFO_GPA,
        cr3: tables.cr3(),
        ring,
    };
    Ok(ElfGuestLayout { elf: loaded, entry, boot_info })
}
