//! `hostile NAME`: guests that each do one bad thing to the VMM, for the hostile-guest
//! suite (tests/hostile_guest.rs). A case that survives prints one line,
//! `hostile NAME: <what the guest saw>`, and exits with 0; a case that cannot survive (a
//! triple fault, a guest that never stops) ends in the VMM's fault report instead. The
//! virtio cases ([`crate::hostile_virtio`]) need `--disk IMAGE`.

use crate::console::{self, Line};
use crate::hypercall;
use crate::paging;
use core::arch::asm;
use vmscope_abi::{BootInfo, PORT_CONSOLE_WRITE, PORT_WALL_TIME};

/// First port of the port storms (nothing is there).
const STORM_PORT: u16 = 0x1000;
/// Ports and pages the storms touch: more than the exit table's 256 distinct keys.
const STORM: u64 = 300;
/// An address in the 32-bit hole that neither memory nor a device backs.
const HOLE_GPA: u64 = 0xe000_0000;

/// Runs case `name`; `None` if there is no such case.
pub fn run(boot: &BootInfo, name: &[u8]) -> Option<u32> {
    Some(match name {
        b"port-storm" => port_storm(),
        b"port-read-storm" => port_read_storm(),
        b"mmio-storm" => mmio_storm(boot),
        b"mmio-read-storm" => mmio_read_storm(boot),
        b"console-flood" => console_flood(boot),
        b"uart-flood" => uart_flood(),
        b"hypercall-straddle" => refused(name, boot.mem_size - 8, 16),
        b"hypercall-wrap" => refused(name, u64::MAX - 4, 16),
        b"hypercall-huge-len" => refused(name, boot.free_start, u64::MAX),
        b"hypercall-too-long" => refused(name, boot.free_start, (1 << 20) + 1),
        b"hypercall-arg-outside" => hypercall_arg_outside(boot),
        b"hypercall-arg-straddle" => hypercall_arg_straddle(boot),
        b"exit-code-wide" => hypercall::exit(0x1_2345),
        b"ud2" => fault(b"ud2", || unsafe_ud2()),
        b"compat-ud2" => compat_ud2(boot),
        b"real-ud2" => real_ud2(boot),
        b"protected-ud2" => protected_ud2(boot),
        b"int3" => fault(b"int3", || {
            // SAFETY: deliberately traps with no IDT.
            unsafe { asm!("int3", options(nomem, nostack)) }
        }),
        b"hlt" => fault(b"cli; hlt", || {
            // SAFETY: deliberately halts with interrupts off (a #GP at CPL3).
            unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
        }),
        b"wrmsr" => fault(b"wrmsr 0xdeadbeef", || {
            // SAFETY: deliberately writes an MSR that does not exist (#GP).
            unsafe {
                asm!("wrmsr", in("ecx") 0xdead_beefu32, in("eax") 0, in("edx") 0, options(nomem, nostack))
            }
        }),
        b"cr3-outside" => fault(b"mov cr3, 0x40000000", || {
            // SAFETY: deliberately points paging at a PML4 outside guest memory.
            unsafe { asm!("mov cr3, {}", in(reg) 0x4000_0000u64, options(nostack)) }
        }),
        b"pt-outside-ram" => pt_outside_ram(),
        b"pd-outside-ram" => pd_outside_ram(boot),
        b"spin" => {
            console::write(b"hostile spin: looping forever\n");
            #[allow(clippy::empty_loop)]
            loop {}
        }
        b"ring-garbage" => ring_garbage(),
        _ => return None,
    })
}

/// Names for the unknown-case message.
pub const NAMES: &[u8] = b"port-storm port-read-storm mmio-storm mmio-read-storm console-flood uart-flood \
hypercall-straddle hypercall-wrap hypercall-huge-len hypercall-too-long hypercall-arg-outside \
hypercall-arg-straddle exit-code-wide ud2 compat-ud2 protected-ud2 real-ud2 int3 hlt wrmsr cr3-outside pt-outside-ram \
pd-outside-ram spin ring-garbage, and with --disk: ";

/// The start of every case's line, `hostile NAME: `, for the case to finish.
pub(crate) fn done(name: &[u8]) -> Line {
    let mut l = Line::new();
    l.str(b"hostile ").str(name).str(b": ");
    l
}

/// `out` to 300 ports where nothing is.
fn port_storm() -> u32 {
    for i in 0..STORM {
        hypercall::outb(STORM_PORT + i as u16, 0x5a);
    }
    done(b"port-storm").dec(STORM).str(b" ports written\n").send();
    0
}

/// `in` from 300 ports where nothing is: each must read all ones.
fn port_read_storm() -> u32 {
    let mut ones = 0;
    for i in 0..STORM {
        let v: u8;
        // SAFETY: a port read; the VMM answers it.
        unsafe { asm!("in al, dx", in("dx") STORM_PORT + i as u16, out("al") v, options(nomem, nostack)) };
        ones += u64::from(v == 0xff);
    }
    done(b"port-read-storm").dec(ones).str(b" of ").dec(STORM).str(b" reads were 0xff\n").send();
    u32::from(ones != STORM)
}

/// Checks the probe page is MMIO, not memory.
fn probe(boot: &BootInfo) -> Option<u64> {
    (boot.mem_size <= vmscope_abi::MMIO_PROBE_GPA).then_some(vmscope_abi::MMIO_PROBE_GPA)
}

/// A store to each of 512 fresh 4 KiB pages (the probe's 2 MiB page).
fn mmio_storm(boot: &BootInfo) -> u32 {
    let Some(base) = probe(boot) else { return 3 };
    for page in 0..512u64 {
        crate::virtio::w32(base + page * 0x1000, page as u32);
    }
    done(b"mmio-storm").str(b"512 pages written\n").send();
    0
}

/// A load from each of 300 fresh pages: each reads all ones.
fn mmio_read_storm(boot: &BootInfo) -> u32 {
    let Some(base) = probe(boot) else { return 3 };
    let mut ones = 0;
    for page in 0..STORM {
        ones += u64::from(crate::virtio::r32(base + page * 0x1000) == u32::MAX);
    }
    done(b"mmio-read-storm").dec(ones).str(b" of ").dec(STORM).str(b" reads were 0xffffffff\n").send();
    u32::from(ones != STORM)
}

/// 1 MiB of console text without a newline, in 16 hypercalls, then 1 MiB + 1 in one
/// (refused: the VMM's limit per call).
fn console_flood(boot: &BootInfo) -> u32 {
    let chunk = 64 << 10;
    if boot.free_end - boot.free_start < (1 << 20) + 1 {
        return 3;
    }
    for i in 0..(1u64 << 20) + 1 {
        crate::virtio::w8(boot.free_start + i, b'x');
    }
    let mut written = 0;
    for i in 0..16 {
        written += hypercall::console_write_raw(boot.free_start + i * chunk, chunk);
    }
    let over = hypercall::console_write_raw(boot.free_start, (1 << 20) + 1);
    Line::new()
        .str(b"\nhostile console-flood: ")
        .dec(written)
        .str(b" bytes written, 1 MiB + 1 answered ")
        .hex(over)
        .str(b"\n")
        .send();
    u32::from(over != u64::MAX)
}

/// 4096 bytes through COM1, one exit each, no newline.
fn uart_flood() -> u32 {
    for _ in 0..4096 {
        hypercall::outb(0x3f8, b'u');
    }
    console::write(b"\nhostile uart-flood: 4096 bytes without a newline\n");
    0
}

/// A console write the VMM must refuse (`ret` = u64::MAX).
fn refused(name: &[u8], buf_gpa: u64, len: u64) -> u32 {
    let ret = hypercall::console_write_raw(buf_gpa, len);
    done(name)
        .str(b"buffer ")
        .hex(buf_gpa)
        .str(b" length ")
        .hex(len)
        .str(b" answered ")
        .hex(ret)
        .str(b"\n")
        .send();
    u32::from(ret != u64::MAX)
}

/// Hypercalls whose argument struct is outside guest memory: nothing to read or write
/// back, so the VMM ignores them and the guest carries on.
fn hypercall_arg_outside(boot: &BootInfo) -> u32 {
    hypercall::outl(PORT_CONSOLE_WRITE, (boot.mem_size + 0x100) as u32);
    hypercall::outl(PORT_WALL_TIME, (boot.mem_size + 0x100) as u32);
    hypercall::outl(PORT_CONSOLE_WRITE, u32::MAX);
    done(b"hypercall-arg-outside").str(b"3 hypercalls with arguments outside memory ignored\n").send();
    0
}

/// A console-write argument whose last field lies past the end of memory: the VMM must not
/// read half of it, so the first 8 bytes stay as the guest left them.
fn hypercall_arg_straddle(boot: &BootInfo) -> u32 {
    let at = boot.mem_size - 8;
    // The stack is at the top of memory; its last 8 bytes hold nothing of ours.
    let buf = b"must not appear\n";
    crate::virtio::w64(at, buf.as_ptr() as u64);
    hypercall::outl(PORT_CONSOLE_WRITE, at as u32);
    let first = crate::virtio::r32(at) as u64 | (u64::from(crate::virtio::r32(at + 4)) << 32);
    done(b"hypercall-arg-straddle")
        .str(b"argument at ")
        .hex(at)
        .str(b" ignored, first field still ")
        .hex(first)
        .str(b"\n")
        .send();
    u32::from(first != buf.as_ptr() as u64)
}

#[inline(never)]
fn unsafe_ud2() {
    // SAFETY: deliberately faults with no IDT.
    unsafe { asm!("ud2", options(nomem, nostack)) }
}

/// Announces an instruction, runs it (it must not return), returns 1 if it did.
fn fault(what: &[u8], f: impl FnOnce()) -> u32 {
    Line::new().str(b"hostile: executing ").str(what).str(b"\n").send();
    f();
    Line::new().str(b"hostile: ").str(what).str(b" returned\n").send();
    1
}

/// Far return into a 32-bit code segment (compatibility mode) at the current CPL, then
/// `ud2` there: the triple fault happens outside 64-bit mode. The segment replaces the
/// GDT slot of the other privilege level's code segment (the GDT is in guest memory).
fn compat_ud2(boot: &BootInfo) -> u32 {
    // Base 0, limit 4 GiB, 32-bit (D=1, L=0), execute/read, present, DPL = our CPL.
    let (slot, selector, descriptor): (u64, u64, u64) =
        if boot.ring == 3 { (1, 0x08 | 3, 0x00cf_fa00_0000_ffff) } else { (3, 0x18, 0x00cf_9a00_0000_ffff) };
    crate::virtio::w64(vmscope_abi::layout::GDT_GPA + slot * 8, descriptor);
    console::write(b"hostile: far return to a 32-bit code segment, then ud2\n");
    // SAFETY: deliberately leaves 64-bit mode; the code at 2: is `ud2`, whose encoding is
    // the same in both modes, and nothing after it runs.
    unsafe {
        asm!(
            "lea {tmp}, [rip + 2f]",
            "push {sel}",
            "push {tmp}",
            "retfq",
            "2:",
            "ud2",
            sel = in(reg) selector,
            tmp = out(reg) _,
        )
    };
    1
}

/// Maps a 2 MiB page of the hole (no memory, no device) and touches it: a read answers all
/// ones, a write is dropped; both are counted MMIO exits.
fn pt_outside_ram() -> u32 {
    if let Err(e) = paging::map_2m(HOLE_GPA, HOLE_GPA) {
        console::write(e);
        return 3;
    }
    crate::virtio::w32(HOLE_GPA, 0x1234_5678);
    let v = crate::virtio::r32(HOLE_GPA);
    done(b"pt-outside-ram").str(b"read ").hex(u64::from(v)).str(b" at ").hex(HOLE_GPA).str(b"\n").send();
    u32::from(v != u32::MAX)
}

/// Points a PDPT entry at a page directory outside guest memory and reads through it: the
/// page walk itself reaches no memory.
fn pd_outside_ram(boot: &BootInfo) -> u32 {
    let va = 0x4000_0000;
    if boot.mem_size > va {
        return 3;
    }
    paging::set_pdpt_entry(va, HOLE_GPA);
    console::write(b"hostile: reading through a page directory outside guest memory\n");
    let v = crate::virtio::r32(va);
    done(b"pd-outside-ram").str(b"read ").hex(u64::from(v)).str(b"\n").send();
    1
}

/// The shared byte ring with a `head` a terabyte ahead of `tail`, a kick, then `head`
/// behind `tail` and another kick: the VMM's consumer must count both and skip, not copy
/// a terabyte.
fn ring_garbage() -> u32 {
    use core::sync::atomic::{AtomicU64, Ordering};
    use vmscope_abi::layout::RING_HEADER_GPA;
    use vmscope_abi::ring::{HEAD, TAIL};
    // SAFETY: the ring header is guest memory at a fixed, aligned address.
    let head = unsafe { &*((RING_HEADER_GPA + HEAD) as *const AtomicU64) };
    // SAFETY: as above.
    let tail = unsafe { &*((RING_HEADER_GPA + TAIL) as *const AtomicU64) };
    head.store(1 << 40, Ordering::SeqCst);
    hypercall::outl(vmscope_abi::PORT_DOORBELL, 0);
    while tail.load(Ordering::SeqCst) != 1 << 40 {
        core::hint::spin_loop();
    }
    head.store(5, Ordering::SeqCst);
    hypercall::outl(vmscope_abi::PORT_DOORBELL, 0);
    while tail.load(Ordering::SeqCst) != 5 {
        core::hint::spin_loop();
    }
    done(b"ring-garbage").str(b"the consumer skipped to head twice\n").send();
    0
}

/// From 64-bit CPL0 down to real mode: compatibility mode, paging off (which leaves long
/// mode), a 16-bit protected-mode segment, CR0.PE off, a real-mode far jump, then `ud2`
/// with no interrupt vector table (IDTR limit 0): the triple fault happens in real mode.
/// The 16-bit code lies below 0x10ffef, so segment 0xffff reaches it.
fn real_ud2(boot: &BootInfo) -> u32 {
    if boot.ring != 0 {
        console::write(b"hostile real-ud2: needs --ring 0 (CR0 is privileged)\n");
        return 3;
    }
    // Slot 3: 32-bit code, base 0, 4 GiB; slot 4: 16-bit code, base 0xffff0, 64 KiB.
    crate::virtio::w64(vmscope_abi::layout::GDT_GPA + 3 * 8, 0x00cf_9a00_0000_ffff);
    crate::virtio::w64(vmscope_abi::layout::GDT_GPA + 4 * 8, 0x0000_9a0f_fff0_ffff);
    console::write(b"hostile: to compatibility mode, paging off, real mode, then ud2\n");
    // SAFETY: deliberately leaves long mode and protected mode; nothing after ud2 runs.
    unsafe {
        asm!(
            "lea {tmp}, [rip + 2f]",
            "push 0x18",
            "push {tmp}",
            "retfq",
            ".code32",
            "2:",
            "mov eax, cr0",
            "and eax, 0x7fffffff",
            "mov cr0, eax",
            // ljmp 0x20:(3f - 0xffff0)
            ".byte 0xea",
            ".long 3f - 0xffff0",
            ".word 0x20",
            ".code16",
            "3:",
            "mov eax, cr0",
            "and eax, 0xfffffffe",
            "mov cr0, eax",
            // ljmp 0xffff:(4f - 0xffff0)
            ".byte 0xea",
            ".word 4f - 0xffff0",
            ".word 0xffff",
            "4:",
            "ud2",
            ".code64",
            tmp = out(reg) _,
            out("eax") _,
        )
    };
    1
}

/// From 64-bit CPL0 to 32-bit protected mode without paging (compatibility mode, then
/// CR0.PG off, which clears EFER.LMA), then `ud2`: the triple fault happens in legacy
/// protected mode.
fn protected_ud2(boot: &BootInfo) -> u32 {
    if boot.ring != 0 {
        console::write(b"hostile protected-ud2: needs --ring 0 (CR0 is privileged)\n");
        return 3;
    }
    crate::virtio::w64(vmscope_abi::layout::GDT_GPA + 3 * 8, 0x00cf_9a00_0000_ffff);
    console::write(b"hostile: to compatibility mode, paging off, then ud2\n");
    // SAFETY: deliberately leaves long mode; nothing after ud2 runs.
    unsafe {
        asm!(
            "lea {tmp}, [rip + 2f]",
            "push 0x18",
            "push {tmp}",
            "retfq",
            ".code32",
            "2:",
            "mov eax, cr0",
            "and eax, 0x7fffffff",
            "mov cr0, eax",
            "ud2",
            ".code64",
            tmp = out(reg) _,
            out("eax") _,
        )
    };
    1
}
