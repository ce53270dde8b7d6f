//! Booting a Linux kernel: an uncompressed `vmlinux` entered through its PVH note
//! (32-bit protected mode, paging off, `EBX` = `hvm_start_info`), with an initramfs as the
//! PVH module, a memory map, and the command line.

use super::pvh::{self, Module};
use crate::arch::x86_64::gdt::Descriptor;
use crate::vstate::memory::{mem_size, write_phys, GuestMemory, MemoryError};
use inspect::regs::{cr0, rflags};
use inspect::Gpa;
use kvm_bindings::{kvm_regs, kvm_sregs};
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::KernelLoader;
use std::io::Cursor;
use vm_memory::GuestAddress;
use vmscope_abi::layout as abi_layout;

/// Errors from preparing a Linux boot. `name` is the file path.
#[derive(Debug, thiserror::Error)]
pub enum LinuxBootError {
    /// Not an ELF kernel.
    #[error("{name} is not a vmlinux ELF kernel{hint}")]
    NotVmlinux {
        /// The file.
        name: String,
        /// What it looks like instead.
        hint: &'static str,
    },
    /// No PVH entry.
    #[error("{name} has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); build it with CONFIG_PVH=y")]
    NoPvhNote {
        /// The file.
        name: String,
    },
    /// linux-loader refused it.
    #[error("cannot load the kernel {name}")]
    Load {
        /// The file.
        name: String,
        /// Why.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// The initramfs is not a cpio archive.
    #[error("{name} is not an initramfs: expected a newc cpio archive (\"070701\") or gzip data")]
    NotCpio {
        /// The file.
        name: String,
    },
    /// The initramfs does not fit above the kernel.
    #[error("the initramfs {name} ({size} bytes) does not fit in guest memory above the kernel (ends at {kernel_end:#x}); try a larger --mem")]
    InitrdTooLarge {
        /// The file.
        name: String,
        /// Its size.
        size: usize,
        /// Where the kernel ends.
        kernel_end: u64,
    },
    /// The command line is too long.
    #[error("the kernel command line is {len} bytes; Linux accepts at most {}", pvh::layout::CMDLINE_MAX - 1)]
    CmdlineTooLong {
        /// Its length.
        len: usize,
    },
    /// Writing boot structures.
    #[error("cannot write the boot structures")]
    Memory(#[from] MemoryError),
}

/// What was loaded where.
#[derive(Clone, Copy, Debug)]
pub struct LinuxLayout {
    /// The PVH entry point (32-bit).
    pub entry: u64,
    /// End of the kernel image.
    pub kernel_end: u64,
    /// The initramfs, if any.
    pub initrd: Option<Module>,
}

/// Checks that `bytes` look like an initramfs.
pub fn check_initrd(name: &str, bytes: &[u8]) -> Result<(), LinuxBootError> {
    if bytes.starts_with(b"070701") || bytes.starts_with(b"070702") || bytes.starts_with(&[0x1f, 0x8b]) {
        Ok(())
    } else {
        Err(LinuxBootError::NotCpio { name: name.into() })
    }
}

fn not_vmlinux_hint(bytes: &[u8]) -> &'static str {
    if bytes.len() > 0x206 && &bytes[0x202..0x206] == b"HdrS" {
        " (it is a bzImage; vmscope boots the uncompressed vmlinux, which on PVM also avoids minutes of emulated decompression)"
    } else {
        ""
    }
}

/// Loads `kernel` and `initrd` into `mem` and writes the PVH structures.
pub fn setup(
    mem: &GuestMemory,
    kernel_name: &str,
    kernel: &[u8],
    initrd: Option<(&str, &[u8])>,
    cmdline: &str,
) -> Result<LinuxLayout, LinuxBootError> {
    if !kernel.starts_with(b"\x7fELF") {
        return Err(LinuxBootError::NotVmlinux { name: kernel_name.into(), hint: not_vmlinux_hint(kernel) });
    }
    if cmdline.len() >= pvh::layout::CMDLINE_MAX {
        return Err(LinuxBootError::CmdlineTooLong { len: cmdline.len() });
    }
    if let Some((name, bytes)) = initrd {
        check_initrd(name, bytes)?;
    }
    let loaded = linux_loader::loader::elf::Elf::load(
        mem,
        None,
        &mut Cursor::new(kernel),
        Some(GuestAddress(pvh::layout::HIGH_RAM_START)),
    )
    .map_err(|source| LinuxBootError::Load { name: kernel_name.into(), source })?;
    let PvhBootCapability::PvhEntryPresent(entry) = loaded.pvh_boot_cap else {
        return Err(LinuxBootError::NoPvhNote { name: kernel_name.into() });
    };
    let size = mem_size(mem);
    let kernel_end = loaded.kernel_end;
    let module = match initrd {
        None => None,
        Some((name, bytes)) => {
            // As high as possible, page aligned, like a bootloader would.
            let addr = size.checked_sub(bytes.len() as u64).map(|a| a & !0xfff);
            let addr = addr
                .filter(|a| *a >= kernel_end.next_multiple_of(0x1000))
                .ok_or(LinuxBootError::InitrdTooLarge { name: name.into(), size: bytes.len(), kernel_end })?;
            write_phys(mem, Gpa(addr), bytes)?;
            Some(Module { paddr: addr, size: bytes.len() as u64 })
        }
    };
    for (gpa, bytes) in pvh::boot_structures(size, cmdline, module) {
        write_phys(mem, gpa, &bytes)?;
    }
    let gdt: Vec<u8> = pvh_gdt().iter().flat_map(|e| e.to_le_bytes()).collect();
    write_phys(mem, Gpa(abi_layout::GDT_GPA), &gdt)?;
    Ok(LinuxLayout { entry: entry.0, kernel_end, initrd: module })
}

/// The boot GDT for PVH entry: null, flat 32-bit code, flat data, a TSS.
fn pvh_gdt() -> [u64; 4] {
    [0, code32().encode(), data32().encode(), Descriptor::tss(0).encode()]
}

fn code32() -> Descriptor {
    Descriptor { l: false, db: true, ..Descriptor::code64(0) }
}

fn data32() -> Descriptor {
    Descriptor::data(0)
}

/// Special registers for PVH entry: protected mode, paging off, flat segments.
pub fn pvh_sregs(base: kvm_sregs) -> kvm_sregs {
    let mut s = base;
    s.cs = code32().to_kvm_segment(0x08);
    let data = data32().to_kvm_segment(0x10);
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = Descriptor::tss(0).to_kvm_segment(0x18);
    s.tr.limit = 0x67;
    s.gdt.base = abi_layout::GDT_GPA;
    s.gdt.limit = (std::mem::size_of_val(&pvh_gdt()) - 1) as u16;
    s.cr0 = cr0::PE | cr0::ET;
    s.cr3 = 0;
    s.cr4 = 0;
    s.efer = 0;
    s
}

/// General registers for PVH entry: `EBX` = `hvm_start_info`.
pub fn pvh_regs(entry: u64) -> kvm_regs {
    kvm_regs { rip: entry, rbx: pvh::layout::START_INFO_GPA, rflags: rflags::FIXED, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::create_guest_memory;

    #[test]
    fn rejects_what_is_not_a_kernel_or_initrd() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let e = setup(&mem, "notes.txt", b"hello", None, "").unwrap_err();
        assert_eq!(e.to_string(), "notes.txt is not a vmlinux ELF kernel");
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(setup(&mem, "bzImage", &bz, None, "").unwrap_err().to_string().contains("it is a bzImage"));
        assert!(check_initrd("x.cpio", b"070701000").is_ok());
        assert!(check_initrd("x.gz", &[0x1f, 0x8b, 8]).is_ok());
        assert!(matches!(check_initrd("notes.txt", b"hello"), Err(LinuxBootError::NotCpio { .. })));
        // An ELF without a PVH note (a unikernel-style image).
        let elf = crate::test_utils::tiny_elf(0x20_0000, &[0xf4], 62);
        assert!(matches!(setup(&mem, "tiny", &elf, None, ""), Err(LinuxBootError::NoPvhNote { .. })));
    }

    #[test]
    fn entry_state_is_flat_protected_mode() {
        let s = pvh_sregs(kvm_sregs::default());
        assert_eq!((s.cs.db, s.cs.l, s.cs.limit, s.cs.base), (1, 0, 0xffff_ffff, 0));
        assert_eq!(s.cr0 & cr0::PG, 0);
        assert_eq!(pvh_regs(0x100_0000).rbx, pvh::layout::START_INFO_GPA);
    }
}
