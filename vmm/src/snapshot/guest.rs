//! The guest's identity in `meta`: how it was laid out when it booted (an ELF guest's entry
//! contract, or a Linux kernel's protocol, entry, initramfs and command line), and the
//! layout a restored machine gets back from it.

use super::meta::{BootInfoMeta, GuestMeta};
use super::SnapshotError;
use crate::arch::x86_64::regs::LongModeEntry;
use crate::arch::x86_64::Ring;
use crate::boot::elf_guest::ElfGuestLayout;
use crate::boot::linux::{BootProtocol, LinuxLayout};
use crate::boot::pvh::Module;
use crate::loader::LoadedElf;
use crate::machine::{GuestLayout, Machine};

/// `meta`'s description of `machine`'s guest.
pub fn guest_meta(machine: &Machine) -> GuestMeta {
    match machine.layout() {
        GuestLayout::Elf(l) => elf_meta(l),
        GuestLayout::Linux(l) => GuestMeta::Linux {
            kernel: machine.name().to_string(),
            cmdline: machine.cmdline().to_string(),
            protocol: match l.protocol {
                BootProtocol::Pvh => "pvh",
                BootProtocol::Linux64 => "linux64",
            }
            .into(),
            entry: l.entry,
            kernel_end: l.kernel_end,
            initrd: l.initrd.map(|m| (m.paddr, m.size)),
            bzimage: l.bzimage,
        },
    }
}

fn elf_meta(l: &ElfGuestLayout) -> GuestMeta {
    let b = &l.boot_info;
    GuestMeta::Elf {
        ring: l.entry.ring.cpl(),
        entry: l.elf.entry,
        elf_end: l.elf.end,
        stack: l.entry.stack,
        arg: l.entry.arg,
        cr3: l.entry.cr3,
        boot_info: BootInfoMeta {
            mem_size: b.mem_size,
            cmdline_gpa: b.cmdline_gpa,
            cmdline_len: b.cmdline_len,
            free_start: b.free_start,
            free_end: b.free_end,
            ring: b.ring,
            nr_vcpus: b.nr_vcpus,
        },
    }
}

/// The layout a machine restored from `g` carries (what the debugger and `info` read).
pub fn layout_of(g: &GuestMeta) -> Result<GuestLayout, SnapshotError> {
    let bad = |detail: String| SnapshotError::BadSection { section: "meta".into(), detail };
    match g {
        GuestMeta::Elf { ring, entry, elf_end, stack, arg, cr3, boot_info: b } => {
            let ring = Ring::from_cpl(*ring).ok_or_else(|| bad(format!("ring {ring} is not 0 or 3")))?;
            Ok(GuestLayout::Elf(ElfGuestLayout {
                elf: LoadedElf { entry: *entry, end: *elf_end },
                entry: LongModeEntry { entry: *entry, stack: *stack, arg: *arg, cr3: *cr3, ring },
                boot_info: vmscope_abi::BootInfo {
                    magic: vmscope_abi::BOOT_MAGIC,
                    mem_size: b.mem_size,
                    cmdline_gpa: b.cmdline_gpa,
                    cmdline_len: b.cmdline_len,
                    free_start: b.free_start,
                    free_end: b.free_end,
                    ring: b.ring,
                    nr_vcpus: b.nr_vcpus,
                },
            }))
        }
        GuestMeta::Linux { protocol, entry, kernel_end, initrd, bzimage, .. } => {
            let protocol = match protocol.as_str() {
                "pvh" => BootProtocol::Pvh,
                "linux64" => BootProtocol::Linux64,
                other => return Err(bad(format!("boot protocol {other:?} is not \"pvh\" or \"linux64\""))),
            };
            Ok(GuestLayout::Linux(LinuxLayout {
                entry: *entry,
                kernel_end: *kernel_end,
                initrd: initrd.map(|(paddr, size)| Module { paddr, size }),
                protocol,
                bzimage: *bzimage,
            }))
        }
    }
}
