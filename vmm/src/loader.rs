//! Loading a guest ELF (vmscope's unikernel or any ELF that follows its entry contract,
//! see the `vmscope-abi` crate) into guest memory, with every check done before a byte is
//! written so a bad file gets an error that names it.

use crate::vstate::memory::GuestMemory;
use object::elf::{EM_X86_64, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::Endianness;
use std::io::Cursor;
use vm_memory::GuestAddress;
use vmscope_abi::KERNEL_MIN_GPA;

/// Errors from loading a guest ELF. `name` is the file path (or "the built-in unikernel").
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// Not an ELF at all, or a malformed one.
    #[error("{name} is not a valid ELF file: {reason}")]
    NotElf {
        /// The file.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An ELF for another machine.
    #[error("{name} is an ELF for another machine (e_machine {machine}), not x86_64")]
    WrongMachine {
        /// The file.
        name: String,
        /// Its e_machine.
        machine: u16,
    },
    /// Nothing to load.
    #[error("{name} has no loadable (PT_LOAD) segments")]
    NoSegments {
        /// The file.
        name: String,
    },
    /// A segment that starts below the load area: the VMM's boot structures (GDT, TSS,
    /// page tables, `BootInfo`, command line) live below `vmscope_abi::KERNEL_MIN_GPA`.
    #[error("{name}: segment {index} at gpa:{start:#x}..{end:#x} starts below gpa:{min:#x}: loadable segments must start at or above 1 MiB (vmscope_abi::KERNEL_MIN_GPA), where the VMM's boot structures end; link the guest at 1 MiB or higher")]
    BelowLoadArea {
        /// The file.
        name: String,
        /// Program header index.
        index: usize,
        /// Segment start (`p_paddr`).
        start: u64,
        /// Segment end (`p_paddr + p_memsz`).
        end: u64,
        /// The lowest address a segment may start at.
        min: u64,
    },
    /// A segment whose end does not fit in 64 bits.
    #[error("{name}: segment {index} at gpa:{start:#x} with p_memsz {memsz:#x} runs past the end of the 64-bit address space")]
    SegmentWraps {
        /// The file.
        name: String,
        /// Program header index.
        index: usize,
        /// Segment start (`p_paddr`).
        start: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A segment that ends beyond the memory guests may load into.
    #[error("{name}: segment {index} at gpa:{start:#x}..{end:#x} does not fit in guest memory (loadable area gpa:{min:#x}..{max:#x}; try a larger --mem)")]
    DoesNotFit {
        /// The file.
        name: String,
        /// Program header index.
        index: usize,
        /// Segment start (physical).
        start: u64,
        /// Segment end (physical).
        end: u64,
        /// Lowest allowed address.
        min: u64,
        /// Highest allowed end.
        max: u64,
    },
    /// The entry point is outside every loaded segment.
    #[error("{name}: entry point {entry:#x} is not inside a loaded segment")]
    BadEntry {
        /// The file.
        name: String,
        /// e_entry.
        entry: u64,
    },
    /// linux-loader refused it.
    #[error("{name}: loading failed")]
    Load {
        /// The file.
        name: String,
        /// linux-loader's error: which header or segment it refused.
        #[source]
        source: linux_loader::loader::Error,
    },
}

/// Where a loaded ELF sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedElf {
    /// The entry point (`e_entry`).
    pub entry: u64,
    /// First byte after the highest segment (`p_paddr + p_memsz`).
    pub end: u64,
}

/// How `vmscope run --elf` enters a guest ELF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfEntry {
    /// vmscope's contract: long mode at `e_entry`, boot info and hypercalls (the unikernel,
    /// and any ELF without a PVH entry).
    Direct,
    /// The 32-bit PVH entry its `XEN_ELFNOTE_PHYS32_ENTRY` note names, with `hvm_start_info`,
    /// as QEMU's `-kernel`, Firecracker and Cloud Hypervisor enter it.
    Pvh,
}

/// `XEN_ELFNOTE_PHYS32_ENTRY`.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// How `bytes` wants to be entered: [`ElfEntry::Direct`] when it carries vmscope's note
/// (`vmscope_abi::NOTE_DIRECT_ENTRY`) or no PVH note, [`ElfEntry::Pvh`] when it has a PVH
/// note and not vmscope's. Notes are read from the `PT_NOTE` segments; what cannot be
/// parsed counts as absent (the loader then reports what is wrong with the file).
pub fn entry_kind(bytes: &[u8]) -> ElfEntry {
    let (mut pvh, mut direct) = (false, false);
    if let Ok(elf) = ElfFile64::<Endianness>::parse(bytes) {
        let endian = elf.endian();
        for ph in elf.elf_program_headers() {
            let Ok(Some(mut notes)) = ph.notes(endian, bytes) else { continue };
            while let Ok(Some(note)) = notes.next() {
                match (note.name(), note.n_type(endian).0) {
                    (b"Xen", XEN_ELFNOTE_PHYS32_ENTRY) => pvh = true,
                    (vmscope_abi::NOTE_OWNER, vmscope_abi::NOTE_DIRECT_ENTRY) => direct = true,
                    _ => {}
                }
            }
        }
    }
    if pvh && !direct {
        ElfEntry::Pvh
    } else {
        ElfEntry::Direct
    }
}

/// Checks `bytes` (named `name` in errors) and loads its segments into `mem`, allowing
/// `[KERNEL_MIN_GPA, limit)`.
pub fn load_elf(mem: &GuestMemory, name: &str, bytes: &[u8], limit: u64) -> Result<LoadedElf, LoaderError> {
    let checked = check_elf(name, bytes, limit)?;
    let mut image = Cursor::new(bytes);
    use linux_loader::loader::KernelLoader;
    linux_loader::loader::elf::Elf::load(mem, None, &mut image, Some(GuestAddress(KERNEL_MIN_GPA)))
        .map_err(|source| LoaderError::Load { name: name.into(), source })?;
    Ok(checked)
}

/// The checks of [`load_elf`], without touching memory.
pub fn check_elf(name: &str, bytes: &[u8], limit: u64) -> Result<LoadedElf, LoaderError> {
    let not_elf = |reason: String| LoaderError::NotElf { name: name.into(), reason };
    let elf = ElfFile64::<Endianness>::parse(bytes).map_err(|e| not_elf(e.to_string()))?;
    let endian = elf.endian();
    let header = elf.elf_header();
    let machine = header.e_machine(endian);
    if machine != EM_X86_64 {
        return Err(LoaderError::WrongMachine { name: name.into(), machine: machine.0 });
    }
    let entry = header.e_entry(endian);
    let mut end = 0u64;
    let mut entry_ok = false;
    let mut any = false;
    for (index, ph) in elf.elf_program_headers().iter().enumerate() {
        if ph.p_type(endian) != PT_LOAD || ph.p_memsz(endian) == 0 {
            continue;
        }
        any = true;
        let (start, memsz) = (ph.p_paddr(endian), ph.p_memsz(endian));
        let (offset, filesz) = (ph.p_offset(endian), ph.p_filesz(endian));
        let seg_end = start.checked_add(memsz).ok_or_else(|| LoaderError::SegmentWraps {
            name: name.into(),
            index,
            start,
            memsz,
        })?;
        if offset.checked_add(filesz).is_none_or(|e| e > bytes.len() as u64) {
            return Err(not_elf(format!(
                "segment {index}'s {filesz:#x} file bytes at offset {offset:#x} lie outside the file ({} bytes)",
                bytes.len()
            )));
        }
        if filesz > memsz {
            return Err(not_elf(format!(
                "segment {index} has more file bytes (p_filesz {filesz:#x}) than memory (p_memsz {memsz:#x})"
            )));
        }
        if start < KERNEL_MIN_GPA {
            return Err(LoaderError::BelowLoadArea {
                name: name.into(),
                index,
                start,
                end: seg_end,
                min: KERNEL_MIN_GPA,
            });
        }
        if seg_end > limit {
            return Err(LoaderError::DoesNotFit {
                name: name.into(),
                index,
                start,
                end: seg_end,
                min: KERNEL_MIN_GPA,
                max: limit,
            });
        }
        entry_ok |= (start..seg_end).contains(&entry) && ph.p_flags(endian).contains(object::elf::PF_X);
        end = end.max(seg_end);
    }
    if !any {
        return Err(LoaderError::NoSegments { name: name.into() });
    }
    if !entry_ok {
        return Err(LoaderError::BadEntry { name: name.into(), entry });
    }
    Ok(LoadedElf { entry, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::tiny_elf;
    use crate::vstate::memory::create_guest_memory;

    #[test]
    fn an_elf_without_notes_or_not_an_elf_is_entered_directly() {
        assert_eq!(entry_kind(&tiny_elf(0x10_0000, &[0xf4], EM_X86_64.0)), ElfEntry::Direct);
        assert_eq!(entry_kind(b"\x7fELF but not really"), ElfEntry::Direct);
        assert_eq!(entry_kind(&[]), ElfEntry::Direct);
    }

    /// Where `tiny_elf`'s one program header keeps `p_offset` and `p_memsz`.
    const P_OFFSET: usize = 0x40 + 8;
    const P_MEMSZ: usize = 0x40 + 40;

    #[test]
    fn loads_a_tiny_elf() {
        let mem = create_guest_memory(4 << 20).unwrap();
        let elf = tiny_elf(0x10_0000, &[0xf4], EM_X86_64.0);
        let loaded = load_elf(&mem, "tiny", &elf, 4 << 20).unwrap();
        assert_eq!(loaded, LoadedElf { entry: 0x10_0000, end: 0x10_0001 });
        let mut b = [0u8];
        crate::vstate::memory::read_phys_exact(&mem, inspect::Gpa(0x10_0000), &mut b).unwrap();
        assert_eq!(b[0], 0xf4);
    }

    #[test]
    fn bad_files_are_named() {
        let e = check_elf("notes.txt", b"hello world", 4 << 20).unwrap_err();
        assert!(e.to_string().starts_with("notes.txt is not a valid ELF file"), "{e}");
        let arm = tiny_elf(0x10_0000, &[0], 183);
        assert!(matches!(
            check_elf("arm", &arm, 4 << 20),
            Err(LoaderError::WrongMachine { machine: 183, .. })
        ));
        let low = tiny_elf(0x1000, &[0], EM_X86_64.0);
        let e = check_elf("low", &low, 4 << 20).unwrap_err();
        assert!(matches!(e, LoaderError::BelowLoadArea { index: 0, start: 0x1000, end: 0x1001, .. }), "{e}");
        assert!(e.to_string().contains("must start at or above 1 MiB"), "{e}");
        assert!(!e.to_string().contains("--mem"), "{e}");
        let high = tiny_elf(0x50_0000, &[0], EM_X86_64.0);
        let e = check_elf("high", &high, 4 << 20).unwrap_err();
        assert!(e.to_string().contains("does not fit in guest memory"), "{e}");
        // p_paddr + p_memsz past u64::MAX, and p_offset + p_filesz past it: errors, no panic.
        let mut wraps = tiny_elf(u64::MAX - 0xfff, &[0], EM_X86_64.0);
        wraps[P_MEMSZ..P_MEMSZ + 8].copy_from_slice(&0x2000u64.to_le_bytes());
        let e = check_elf("wraps", &wraps, 4 << 20).unwrap_err();
        assert!(matches!(e, LoaderError::SegmentWraps { index: 0, memsz: 0x2000, .. }), "{e}");
        let mut far = tiny_elf(0x10_0000, &[0], EM_X86_64.0);
        far[P_OFFSET..P_OFFSET + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = check_elf("far", &far, 4 << 20).unwrap_err();
        assert!(e.to_string().contains("segment 0's 0x1 file bytes at offset 0xffffffffffffffff"), "{e}");
        let mut more_file = tiny_elf(0x10_0000, &[0; 8], EM_X86_64.0);
        more_file[P_MEMSZ..P_MEMSZ + 8].copy_from_slice(&4u64.to_le_bytes());
        let e = check_elf("more_file", &more_file, 4 << 20).unwrap_err();
        assert!(e.to_string().contains("more file bytes (p_filesz 0x8) than memory (p_memsz 0x4)"), "{e}");
        let mut truncated = tiny_elf(0x10_0000, &[0; 64], EM_X86_64.0);
        truncated.truncate(0x80);
        assert!(matches!(check_elf("trunc", &truncated, 4 << 20), Err(LoaderError::NotElf { .. })));
    }
}
