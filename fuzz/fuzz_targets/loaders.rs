//! The guest loaders, on guest memory without a VM (plain mmap, no KVM): the unikernel ELF
//! loader (`vmm::loader::check_elf`, `vmm::boot::elf_guest::setup`) and the Linux boot
//! (`vmm::boot::linux::setup`: bzImage detection and setup header through linux-loader,
//! vmlinux ELF with or without the PVH note, the initramfs check and placement, the PVH
//! and zero-page structures).
//!
//! Input: flags u8 (bits 0-1: which path, bits 2-3: BootChoice, bit 4: with an initrd) |
//! initrd length u16 | that many initrd bytes | the kernel image.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vmm::arch::x86_64::Ring;
use vmm::boot::linux::{self, BootChoice};
use vmm::vstate::memory::{create_guest_memory, GuestMemory};

/// 16 MiB of guest memory, mapped once (loading only writes into it).
fn mem() -> &'static GuestMemory {
    static MEM: OnceLock<GuestMemory> = OnceLock::new();
    MEM.get_or_init(|| create_guest_memory(16 << 20).expect("16 MiB of guest memory"))
}

fuzz_target!(|data: &[u8]| {
    let mut f = common::Fields::new(data);
    let flags = f.u8();
    let initrd_len = usize::from(f.u16());
    let initrd = f.bytes(initrd_len);
    let kernel = f.data;
    let mem = mem();
    match flags & 3 {
        0 => {
            if let Ok(loaded) = vmm::loader::check_elf("fuzz.elf", kernel, 16 << 20) {
                assert!(loaded.end <= 16 << 20);
            }
        }
        1 => {
            let ring = if flags & 4 != 0 { Ring::Ring3 } else { Ring::Ring0 };
            let _ = vmm::boot::elf_guest::setup(mem, "fuzz.elf", kernel, "fuzz", ring, 1);
        }
        _ => {
            let choice = match (flags >> 2) & 3 {
                0 => BootChoice::Auto,
                1 => BootChoice::Pvh,
                _ => BootChoice::Linux64,
            };
            let initrd = (flags & 0x10 != 0).then_some(("fuzz.cpio", initrd));
            let _ = linux::is_bzimage(kernel);
            // 0..=42 vCPUs: the MP table refuses 0 and more than fit below 640 KiB.
            let vcpus = usize::from(flags >> 5) * 6;
            match linux::setup(mem, "fuzz-kernel", kernel, initrd, "console=ttyS0", choice, vcpus) {
                Ok(layout) => {
                    if let Some(m) = layout.initrd {
                        assert!(m.paddr + m.size <= 16 << 20);
                    }
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }
});
