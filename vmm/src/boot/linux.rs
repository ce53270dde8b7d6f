//! Booting a Linux kernel. The default: an uncompressed `vmlinux` entered through its PVH
//! note (32-bit protected mode, paging off, `EBX` = `hvm_start_info`), with an initramfs as
//! the PVH module, a memory map, and the command line. The other paths use the 64-bit boot
//! protocol ([`super::zero_page`]): a `vmlinux` without a PVH note, and a bzImage, which
//! decompresses itself first (slow where the kernel runs in an instruction emulator).

use super::mptable::{self, MpTableError};
use super::pvh::{self, Module};
use super::zero_page;
use crate::arch::x86_64::gdt::{self, Descriptor};
use crate::arch::x86_64::paging::{identity_map, PagingError};
use crate::arch::x86_64::regs::{long_mode_regs, long_mode_sregs, LongModeEntry};
use crate::arch::x86_64::{vcpu, Ring};
use crate::vstate::memory::{mem_size, write_phys, GuestMemory, MemoryError};
use inspect::regs::{cr0, rflags};
use inspect::Gpa;
use kvm_bindings::{kvm_regs, kvm_sregs};
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::KernelLoader;
use std::io::Cursor;
use vm_memory::ByteValued;
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
    /// No PVH entry, and nothing else that says it is Linux.
    #[error("{name} has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY){why}")]
    NoPvhNote {
        /// The file.
        name: String,
        /// Why the other protocol is not used either.
        why: &'static str,
    },
    /// The page tables for the 64-bit entry.
    #[error("cannot build the boot page tables")]
    Paging(#[from] PagingError),
    /// linux-loader refused it.
    #[error("cannot load the kernel {name}")]
    Load {
        /// The file.
        name: String,
        /// linux-loader's error: which header or segment it refused.
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
    /// The MP table for this many vCPUs.
    #[error("cannot describe the processors to the kernel")]
    MpTable(#[from] MpTableError),
    /// Writing boot structures.
    #[error("cannot write the boot structures")]
    Memory(#[from] MemoryError),
}

/// How the kernel is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootProtocol {
    /// PVH: 32-bit protected mode, paging off, `EBX` = `hvm_start_info`.
    Pvh,
    /// The 64-bit boot protocol: long mode, identity-mapped, `RSI` = the zero page.
    Linux64,
}

/// Which protocol to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BootChoice {
    /// PVH when the kernel has the note, else the 64-bit protocol (a bzImage always).
    #[default]
    Auto,
    /// PVH only.
    Pvh,
    /// The 64-bit protocol even when the kernel has a PVH note.
    Linux64,
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
    /// How the kernel is entered.
    pub protocol: BootProtocol,
    /// The kernel is a bzImage (it decompresses itself before `startup_64`).
    pub bzimage: bool,
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
    if bytes.starts_with(&[0x1f, 0x8b]) {
        " (it is gzip data: decompress it first)"
    } else if bytes.starts_with(b"070701") {
        " (it is a cpio archive: pass it with --initrd)"
    } else {
        ": give vmscope a vmlinux (ELF) or a bzImage"
    }
}

/// Whether `bytes` is a bzImage ("HdrS" at 0x202).
pub fn is_bzimage(bytes: &[u8]) -> bool {
    bytes.len() > 0x206 && &bytes[0x202..0x206] == b"HdrS"
}

/// Whether an ELF without a PVH note is an x86-64 Linux `vmlinux`: it has the sections every
/// one has (`.init.text`, freed after boot, and `.altinstructions`, the alternatives table).
fn looks_like_vmlinux(bytes: &[u8]) -> bool {
    use object::{Object, ObjectSection};
    object::File::parse(bytes).is_ok_and(|f| {
        let has = |name: &str| f.sections().any(|s| s.name() == Ok(name));
        has(".init.text") && has(".altinstructions")
    })
}

/// The kernel as loaded: entry, end, protocol, setup header.
struct Loaded {
    entry: u64,
    kernel_end: u64,
    protocol: BootProtocol,
    hdr: Option<linux_loader::loader::bootparam::setup_header>,
}

fn load_kernel(
    mem: &GuestMemory,
    name: &str,
    kernel: &[u8],
    choice: BootChoice,
) -> Result<Loaded, LinuxBootError> {
    let load_err = |source| LinuxBootError::Load { name: name.into(), source };
    let high = Some(GuestAddress(pvh::layout::HIGH_RAM_START));
    if is_bzimage(kernel) {
        if choice == BootChoice::Pvh {
            return Err(LinuxBootError::NoPvhNote {
                name: name.into(),
                why: ": it is a bzImage, which only the 64-bit boot protocol enters",
            });
        }
        let r = linux_loader::loader::bzimage::BzImage::load(mem, None, &mut Cursor::new(kernel), high)
            .map_err(load_err)?;
        return Ok(Loaded {
            entry: r.kernel_load.0 + zero_page::BZIMAGE_64BIT_ENTRY_OFFSET,
            kernel_end: r.kernel_end,
            protocol: BootProtocol::Linux64,
            hdr: r.setup_header,
        });
    }
    if !kernel.starts_with(b"\x7fELF") {
        return Err(LinuxBootError::NotVmlinux { name: name.into(), hint: not_vmlinux_hint(kernel) });
    }
    let r =
        linux_loader::loader::elf::Elf::load(mem, None, &mut Cursor::new(kernel), high).map_err(load_err)?;
    let protocol = match (r.pvh_boot_cap, choice) {
        (PvhBootCapability::PvhEntryPresent(entry), BootChoice::Auto | BootChoice::Pvh) => {
            return Ok(Loaded {
                entry: entry.0,
                kernel_end: r.kernel_end,
                protocol: BootProtocol::Pvh,
                hdr: None,
            })
        }
        (_, BootChoice::Pvh) => {
            return Err(LinuxBootError::NoPvhNote { name: name.into(), why: "; build it with CONFIG_PVH=y" })
        }
        _ if looks_like_vmlinux(kernel) => BootProtocol::Linux64,
        _ => {
            return Err(LinuxBootError::NoPvhNote {
                name: name.into(),
                why: " and no .init.text or .altinstructions section: it does not look like a Linux kernel",
            })
        }
    };
    Ok(Loaded { entry: r.kernel_load.0, kernel_end: r.kernel_end, protocol, hdr: None })
}

/// Loads `kernel` and `initrd` into `mem` and writes the boot structures of the protocol
/// `choice` leads to, and an MP table for `vcpus` processors (either protocol).
pub fn setup(
    mem: &GuestMemory,
    kernel_name: &str,
    kernel: &[u8],
    initrd: Option<(&str, &[u8])>,
    cmdline: &str,
    choice: BootChoice,
    vcpus: usize,
) -> Result<LinuxLayout, LinuxBootError> {
    if cmdline.len() >= pvh::layout::CMDLINE_MAX {
        return Err(LinuxBootError::CmdlineTooLong { len: cmdline.len() });
    }
    if let Some((name, bytes)) = initrd {
        check_initrd(name, bytes)?;
    }
    let (mp_gpa, mp_table) = mptable::build(vcpus)?;
    let loaded = load_kernel(mem, kernel_name, kernel, choice)?;
    let size = mem_size(mem);
    let kernel_end = loaded.kernel_end;
    let limit = match loaded.protocol {
        BootProtocol::Pvh => size,
        BootProtocol::Linux64 => size.min(zero_page::initrd_limit(loaded.hdr.as_ref())),
    };
    let module = match initrd {
        None => None,
        Some((name, bytes)) => {
            // As high as possible, page aligned, like a bootloader would.
            let addr = limit.checked_sub(bytes.len() as u64).map(|a| a & !0xfff);
            let addr = addr
                .filter(|a| *a >= kernel_end.next_multiple_of(0x1000))
                .ok_or(LinuxBootError::InitrdTooLarge { name: name.into(), size: bytes.len(), kernel_end })?;
            write_phys(mem, Gpa(addr), bytes)?;
            Some(Module { paddr: addr, size: bytes.len() as u64 })
        }
    };
    match loaded.protocol {
        BootProtocol::Pvh => {
            for (gpa, bytes) in pvh::boot_structures(size, cmdline, module) {
                write_phys(mem, gpa, &bytes)?;
            }
            let gdt: Vec<u8> = pvh_gdt().iter().flat_map(|e| e.to_le_bytes()).collect();
            write_phys(mem, Gpa(abi_layout::GDT_GPA), &gdt)?;
        }
        BootProtocol::Linux64 => {
            let mut cmd = cmdline.as_bytes().to_vec();
            cmd.push(0);
            write_phys(mem, Gpa(pvh::layout::CMDLINE_GPA), &cmd)?;
            let params =
                zero_page::boot_params(loaded.hdr, size, pvh::layout::CMDLINE_GPA, cmdline.len(), module);
            write_phys(mem, Gpa(zero_page::ZERO_PAGE_GPA), params.as_slice())?;
            let gdt_bytes: Vec<u8> = gdt::gdt_entries().iter().flat_map(|e| e.to_le_bytes()).collect();
            write_phys(mem, Gpa(abi_layout::GDT_GPA), &gdt_bytes)?;
            write_phys(mem, Gpa(abi_layout::TSS_GPA), &gdt::tss_image())?;
            for (gpa, bytes) in identity_map(size, false)?.bytes() {
                write_phys(mem, gpa, &bytes)?;
            }
        }
    }
    write_phys(mem, mp_gpa, &mp_table)?;
    Ok(LinuxLayout {
        entry: loaded.entry,
        kernel_end,
        initrd: module,
        protocol: loaded.protocol,
        bzimage: loaded.hdr.is_some(),
    })
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

/// Sets vCPU `index` up to run the kernel `layout` describes: every vCPU gets the boot MSRs
/// and its local interrupts wired (LINT0 ExtINT, LINT1 NMI); the boot vCPU also gets the
/// entry state of the protocol (PVH: 32-bit protected mode at the PVH entry; the 64-bit
/// protocol: long mode at the kernel's entry with the zero page in RSI). Application
/// processors wait in KVM for the boot vCPU's INIT/SIPI.
pub fn setup_vcpu(
    fd: &kvm_ioctls::VcpuFd,
    index: usize,
    layout: &LinuxLayout,
) -> Result<(), vcpu::SetupError> {
    vcpu::set_boot_msrs(fd)?;
    vcpu::wire_local_interrupts(fd)?;
    if index != 0 {
        return Ok(());
    }
    match layout.protocol {
        BootProtocol::Pvh => vcpu::enter(fd, &pvh_regs(layout.entry), pvh_sregs),
        BootProtocol::Linux64 => {
            let entry = LongModeEntry {
                entry: layout.entry,
                stack: zero_page::BOOT_STACK,
                arg: 0,
                cr3: abi_layout::PML4_GPA,
                ring: Ring::Ring0,
            };
            let regs = kvm_regs { rsi: zero_page::ZERO_PAGE_GPA, ..long_mode_regs(&entry) };
            vcpu::enter(fd, &regs, |base| long_mode_sregs(base, &entry))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::create_guest_memory;

    #[test]
    fn rejects_what_is_not_a_kernel_or_initrd() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let e = setup(&mem, "notes.txt", b"hello", None, "", BootChoice::Auto, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "notes.txt is not a vmlinux ELF kernel: give vmscope a vmlinux (ELF) or a bzImage"
        );
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(is_bzimage(&bz));
        let e = setup(&mem, "bzImage", &bz, None, "", BootChoice::Pvh, 1).unwrap_err();
        assert!(e.to_string().contains("only the 64-bit boot protocol"), "{e}");
        // A truncated bzImage: linux-loader's checks.
        assert!(matches!(
            setup(&mem, "bzImage", &bz, None, "", BootChoice::Auto, 1),
            Err(LinuxBootError::Load { .. })
        ));
        assert!(check_initrd("x.cpio", b"070701000").is_ok());
        assert!(check_initrd("x.gz", &[0x1f, 0x8b, 8]).is_ok());
        assert!(matches!(check_initrd("notes.txt", b"hello"), Err(LinuxBootError::NotCpio { .. })));
        // An ELF without a PVH note (a unikernel-style image).
        let elf = crate::test_utils::tiny_elf(0x20_0000, &[0xf4], 62);
        let e = setup(&mem, "tiny", &elf, None, "", BootChoice::Auto, 1).unwrap_err();
        assert!(e.to_string().contains("does not look like a Linux kernel"), "{e}");
    }

    #[test]
    fn entry_state_is_flat_protected_mode() {
        let s = pvh_sregs(kvm_sregs::default());
        assert_eq!((s.cs.db, s.cs.l, s.cs.limit, s.cs.base), (1, 0, 0xffff_ffff, 0));
        assert_eq!(s.cr0 & cr0::PG, 0);
        assert_eq!(pvh_regs(0x100_0000).rbx, pvh::layout::START_INFO_GPA);
    }
}
