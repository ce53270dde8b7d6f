//! The hypercalls of the vmscope ABI: one `out` to a port with the argument's address.
//! When the guest was booted through its PVH entry (by QEMU, Firecracker, Cloud
//! Hypervisor) there are no hypercalls: [`serial_mode`] is on, the console is COM1, time
//! comes from the TSC and [`exit`] uses `isa-debug-exit`, ACPI S5, the i8042 reset and a
//! triple fault.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// Set by the PVH entry: no vmscope hypercalls here.
static SERIAL_MODE: AtomicBool = AtomicBool::new(false);

/// Whether the guest runs without vmscope's hypercalls (booted through PVH).
///
/// Never inlined: `console_write` asks it first, and an inlined atomic load there would
/// make gdb stop at `console_write` inside `core::sync::atomic` instead of in the
/// function the user named.
#[inline(never)]
pub fn serial_mode() -> bool {
    SERIAL_MODE.load(Ordering::Relaxed)
}

/// Turns serial mode on (the PVH entry does, before anything else).
pub fn set_serial_mode() {
    SERIAL_MODE.store(true, Ordering::Relaxed);
}

/// QEMU's `isa-debug-exit` port (`-device isa-debug-exit,iobase=0xf4,iosize=4`): QEMU
/// exits with status `(value << 1) | 1`.
const ISA_DEBUG_EXIT: u16 = 0xf4;
/// The i8042 command port; command 0xfe pulses the CPU reset line (Firecracker stops the
/// VM on it; QEMU resets, or exits with `-no-reboot`).
const I8042_COMMAND: u16 = 0x64;
const I8042_RESET: u8 = 0xfe;
/// Cloud Hypervisor's ACPI sleep control register (its FADT's `X_SLEEP_CONTROL_REG`):
/// writing SLP_TYP 5 (S5) with SLP_EN powers the VM off and ends the VMM. Cloud Hypervisor
/// reboots on the i8042 reset and on a triple fault, so this comes before them.
const ACPI_SLEEP_CONTROL: u16 = 0x600;
const ACPI_S5_SLP_EN: u8 = (5 << 2) | (1 << 5);

/// `in al, dx`.
#[inline(always)]
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port I/O only; the VMM answers it.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nostack, preserves_flags)) };
    v
}
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

/// Nanoseconds since the Unix epoch, from the host; in serial mode nanoseconds of the TSC
/// (since the VM started) when the hypervisor tells its frequency (CPUID 0x40000010,
/// which KVM-based VMMs may offer), else 0.
pub fn wall_time() -> u64 {
    if serial_mode() {
        return tsc_ns();
    }
    let mut arg = WallTime { nsecs: 0 };
    outl(PORT_WALL_TIME, gpa_of(&mut arg));
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&arg.nsecs) }
}

/// Sleeps about `us` microseconds (at most a second per call, as the ABI bounds it): the
/// VMM keeps the vCPU out of the guest meanwhile, so a sleeping guest costs no CPU. In
/// serial mode there is no such hypercall: the guest waits on the TSC instead (busy), or
/// not at all when the TSC's frequency is unknown.
#[no_mangle]
#[inline(never)]
pub fn sleep_us(us: u32) {
    let us = us.min(vmscope_abi::SLEEP_MAX_US);
    if serial_mode() {
        let start = tsc_ns();
        while start != 0 && tsc_ns().saturating_sub(start) < u64::from(us) * 1000 {
            core::hint::spin_loop();
        }
        return;
    }
    outl(vmscope_abi::PORT_SLEEP, us);
}

/// The TSC in nanoseconds, or 0 when its frequency is unknown.
fn tsc_ns() -> u64 {
    // SAFETY: cpuid and rdtsc have no side effects.
    let (max_leaf, khz, tsc) = unsafe {
        let max = core::arch::x86_64::__cpuid(0x4000_0000).eax;
        let khz = if max >= 0x4000_0010 { core::arch::x86_64::__cpuid(0x4000_0010).eax } else { 0 };
        (max, khz, core::arch::x86_64::_rdtsc())
    };
    if max_leaf < 0x4000_0010 || khz == 0 {
        return 0;
    }
    (u128::from(tsc) * 1_000_000 / u128::from(khz)) as u64
}

/// Stops the VM with `code`.
pub fn exit(code: u32) -> ! {
    if serial_mode() {
        outb(ISA_DEBUG_EXIT, code as u8);
        outb(ACPI_SLEEP_CONTROL, ACPI_S5_SLP_EN);
        outb(I8042_COMMAND, I8042_RESET);
        triple_fault();
    }
    outl(PORT_EXIT, code);
    // The VMM does not resume a guest that exited; spin if it ever does.
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Resets the machine the last way every x86 VMM honours: an empty IDT and `ud2`.
fn triple_fault() -> ! {
    let idtr = [0u16; 5];
    // SAFETY: loading an empty IDT and faulting is the point: the VM stops (or resets).
    unsafe { asm!("lidt [{0}]", "ud2", in(reg) idtr.as_ptr(), options(noreturn, nostack)) }
}
