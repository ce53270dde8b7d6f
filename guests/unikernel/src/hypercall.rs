//! The hypercalls of the vmscope ABI: one `out` to a port with the argument's address.

use core::arch::asm;
use vmscope_abi::{ConsoleWrite, WallTime, PORT_CONSOLE_WRITE, PORT_EXIT, PORT_WALL_TIME};

/// `out dx, eax`.
#[inline(always)]
pub fn outl(port: u16, value: u32) {
    // SAFETY: port I/O is how this guest talks to the VMM; the VMM validates everything.
    // No `nomem`: the VMM reads and writes the argument struct during the exit.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack, preserves_flags)) };
}

/// `out dx, al`.
#[inline(always)]
pub fn outb(port: u16, value: u8) {
    // SAFETY: as above.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nostack, preserves_flags)) };
}

/// The address of a struct as the 32-bit GPA the ABI passes (memory is identity-mapped
/// and below 4 GiB).
fn gpa_of<T>(t: &mut T) -> u32 {
    t as *mut T as u64 as u32
}

/// Writes a buffer to the console in one exit; returns what the VMM answered
/// (`len`, or `u64::MAX` if it refused the buffer).
#[no_mangle]
#[inline(never)]
pub fn console_write_raw(buf_gpa: u64, len: u64) -> u64 {
    let mut arg = ConsoleWrite { buf_gpa, len, ret: 0 };
    outl(PORT_CONSOLE_WRITE, gpa_of(&mut arg));
    // SAFETY: `arg` is live; the VMM wrote `ret` during the exit.
    unsafe { core::ptr::read_volatile(&arg.ret) }
}

/// Nanoseconds since the Unix epoch, from the host.
pub fn wall_time() -> u64 {
    let mut arg = WallTime { nsecs: 0 };
    outl(PORT_WALL_TIME, gpa_of(&mut arg));
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&arg.nsecs) }
}

/// Stops the VM with `code`.
pub fn exit(code: u32) -> ! {
    outl(PORT_EXIT, code);
    // The VMM does not resume a guest that exited; spin if it ever does.
    #[allow(clippy::empty_loop)]
    loop {}
}
