//! vmscope's unikernel: a freestanding guest that boots straight into 64-bit code under
//! vmscope's VMM (see the `vmscope-abi` crate for the entry contract) and runs one
//! workload chosen on its command line. It is integer-only — built without SSE and never
//! calling `core::fmt` — so that it also runs at CPL0 on a PVM host, where KVM's
//! instruction emulator executes it and cannot run SSE instructions.
#![no_std]
#![no_main]

mod console;
mod dirty;
mod disk_write;
mod hostile;
mod hostile_virtio;
mod hypercall;
mod libc;
mod paging;
mod pvh;
mod ticks;
mod virtio;
mod workloads;

use vmscope_abi::{BootInfo, BOOT_MAGIC};

/// Entry point: the VMM jumps here with `RDI` = the boot information.
///
/// # Safety
/// Called once by the VMM with a valid `BootInfo` pointer, identity-mapped memory and a
/// stack, as the ABI promises.
#[no_mangle]
#[link_section = ".text._start"]
pub unsafe extern "C" fn _start(boot: *const BootInfo) -> ! {
    // SAFETY: the VMM passes the address of a BootInfo it wrote (see the ABI).
    let boot = unsafe { &*boot };
    if boot.magic != BOOT_MAGIC {
        console::write(b"unikernel: bad boot information (wrong magic)\n");
        hypercall::exit(3);
    }
    // SAFETY: the command line is `cmdline_len` bytes at `cmdline_gpa`, identity-mapped.
    let cmdline =
        unsafe { core::slice::from_raw_parts(boot.cmdline_gpa as *const u8, boot.cmdline_len as usize) };
    let code = workloads::run(boot, cmdline);
    hypercall::exit(code)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // No formatting here: core::fmt is built with SSE and would fault at CPL0 on PVM.
    console::write(b"unikernel: panic\n");
    hypercall::exit(101)
}
