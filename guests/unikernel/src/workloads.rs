//! The workloads, chosen by the first word of the command line. Each returns the exit code.
//! Names a debugger can break on: `workload_hello`, `workload_compute`, … (never inlined),
//! and `WORKLOAD_PROGRESS`, which `compute` writes as it goes (for watchpoints).

use crate::console::{self, Line};
use crate::hypercall;
use core::sync::atomic::{AtomicU64, Ordering};
use vmscope_abi::BootInfo;

/// Progress of the running workload (compute: the number being sieved).
#[no_mangle]
pub static WORKLOAD_PROGRESS: AtomicU64 = AtomicU64::new(0);

/// COM1's data port.
const COM1: u16 = 0x3f8;

/// Runs the workload named on `cmdline`.
pub fn run(boot: &BootInfo, cmdline: &[u8]) -> u32 {
    let mut words = cmdline.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let name = words.next().unwrap_or(b"hello");
    let arg = words.next();
    match name {
        b"hello" => workload_hello(boot),
        b"compute" => with_number(arg, |n| workload_compute(boot, n)),
        b"hypercalls" => with_number(arg, workload_hypercalls),
        b"uart" => with_number(arg, workload_uart),
        b"io" => {
            // io BYTES [--batch B] [--ring]: the same contract as the Linux workload binary;
            // --ring moves the bytes through the shared ring instead of hypercalls.
            let (mut batch, mut ring, mut bad) = (Some(4096), false, false);
            while let Some(w) = words.next() {
                match w {
                    b"--batch" => batch = words.next().and_then(parse_u64),
                    b"--ring" => ring = true,
                    _ => bad = true,
                }
            }
            match (arg.and_then(parse_u64), batch) {
                (Some(bytes), Some(batch)) if batch > 0 && !bad && ring => workload_io_ring(bytes, batch),
                (Some(bytes), Some(batch)) if batch > 0 && !bad => workload_io(boot, bytes, batch),
                _ => {
                    console::write(b"unikernel: io needs BYTES, an optional --batch B (B > 0) and --ring\n");
                    2
                }
            }
        }
        b"cpuid" => with_number(arg, workload_cpuid),
        b"mmio" => with_number(arg, |n| workload_mmio(boot, n)),
        b"doorbell" => with_number(arg, workload_doorbell),
        b"exit" => with_number(arg, |n| n as u32),
        b"triple-fault" => workload_triple_fault(),
        b"spin" => workload_spin(),
        b"sse" => workload_sse(boot),
        b"bad-hypercall" => workload_bad_hypercall(boot),
        b"hostile" => workload_hostile(boot, arg.unwrap_or(b"")),
        b"dirty" => crate::dirty::workload_dirty(boot, arg.into_iter().chain(words)),
        b"disk-write" => with_number(arg, |n| crate::disk_write::run(boot, n)),
        b"ticks" => {
            // ticks N [SPIN] [--every MS]
            let (mut spin, mut every, mut bad) = (Some(0), Some(0), false);
            let mut first = true;
            while let Some(w) = words.next() {
                match w {
                    b"--every" => every = words.next().and_then(parse_u64),
                    w if first => spin = parse_u64(w),
                    _ => bad = true,
                }
                first = false;
            }
            match (spin, every) {
                (Some(spin), Some(every)) if !bad => {
                    with_number(arg, |n| crate::ticks::workload_ticks(n, spin, every))
                }
                _ => {
                    console::write(
                        b"unikernel: ticks needs N, an optional SPIN count and an optional --every MS\n",
                    );
                    2
                }
            }
        }
        _ => {
            Line::new()
                .str(b"unikernel: unknown workload '")
                .str(name)
                .str(b"' (try hello, compute N, hypercalls N, uart N, io BYTES, cpuid N, mmio N, doorbell N, exit N, disk-write N, ticks N [SPIN] [--every MS], dirty MIB_PER_S [SECONDS], hostile CASE)\n")
                .send();
            2
        }
    }
}

fn with_number(arg: Option<&[u8]>, f: impl FnOnce(u64) -> u32) -> u32 {
    match arg.and_then(parse_u64) {
        Some(n) => f(n),
        None => {
            console::write(b"unikernel: this workload needs a number argument\n");
            2
        }
    }
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// `hello`: a greeting and the host's wall-clock time.
#[no_mangle]
#[inline(never)]
pub fn workload_hello(boot: &BootInfo) -> u32 {
    Line::new().str(b"Hello from the vmscope unikernel (ring ").dec(u64::from(boot.ring)).str(b")\n").send();
    let ns = hypercall::wall_time();
    Line::new()
        .str(b"wall clock: ")
        .dec(ns / 1_000_000_000)
        .str(b".")
        .dec(ns % 1_000_000_000)
        .str(b" s since the epoch; ")
        .dec(boot.mem_size >> 20)
        .str(b" MiB of memory\n")
        .send();
    0
}

/// `compute N`: a sieve of Eratosthenes below N, bitmap in the free area; prints the
/// number of primes and the (wrapping) sum of them.
#[no_mangle]
#[inline(never)]
pub fn workload_compute(boot: &BootInfo, n: u64) -> u32 {
    let bytes = n.div_ceil(8);
    if n < 2 || bytes > boot.free_end - boot.free_start {
        Line::new().str(b"compute: N=").dec(n).str(b" does not fit in guest memory (or is below 2)\n").send();
        return 3;
    }
    let bitmap = boot.free_start as *mut u8;
    // SAFETY: [free_start, free_start + bytes) is free guest memory per the boot info.
    let composite = unsafe { core::slice::from_raw_parts_mut(bitmap, bytes as usize) };
    composite.iter_mut().for_each(|b| *b = 0);
    let (mut count, mut sum) = (0u64, 0u64);
    let mut i = 2u64;
    while i < n {
        let is_prime = composite.get((i / 8) as usize).is_some_and(|b| b & (1 << (i % 8)) == 0);
        if is_prime {
            count += 1;
            sum = sum.wrapping_add(i);
            WORKLOAD_PROGRESS.store(i, Ordering::Relaxed);
            let mut j = i.saturating_mul(i);
            while j < n {
                if let Some(b) = composite.get_mut((j / 8) as usize) {
                    *b |= 1 << (j % 8);
                }
                j += i;
            }
        }
        i += 1;
    }
    Line::new()
        .str(b"compute: N=")
        .dec(n)
        .str(b" primes=")
        .dec(count)
        .str(b" checksum=")
        .hex(sum)
        .str(b"\n")
        .send();
    0
}

/// `hypercalls N`: N console-write hypercalls of one byte each, then one summary line:
/// N + 1 exits on the console-write port in all.
#[no_mangle]
#[inline(never)]
pub fn workload_hypercalls(n: u64) -> u32 {
    for _ in 0..n {
        console::write(b".");
    }
    Line::new().str(b"\nhypercalls: ").dec(n).str(b" console writes\n").send();
    0
}

/// `uart N`: N bytes through the 16550, one `out` (one exit) per byte, then a summary
/// line through the console hypercall.
#[no_mangle]
#[inline(never)]
pub fn workload_uart(n: u64) -> u32 {
    for i in 0..n {
        hypercall::outb(COM1, if i % 64 == 63 { b'\n' } else { b'u' });
    }
    Line::new().str(b"\nuart: ").dec(n).str(b" bytes through COM1\n").send();
    0
}

/// `io BYTES --batch B`: BYTES bytes written to the console in hypercalls of B bytes each:
/// BYTES / B exits (rounded up), then one summary line.
#[no_mangle]
#[inline(never)]
pub fn workload_io(boot: &BootInfo, bytes: u64, batch: u64) -> u32 {
    let batch = batch.min(boot.free_end - boot.free_start).min(1 << 20);
    let buf = boot.free_start as *mut u8;
    // SAFETY: [free_start, free_start + batch) is free guest memory per the boot info.
    let chunk = unsafe { core::slice::from_raw_parts_mut(buf, batch as usize) };
    chunk.iter_mut().for_each(|b| *b = b'.');
    let (mut left, mut writes) = (bytes, 0u64);
    while left > 0 {
        let n = left.min(batch);
        crate::hypercall::console_write_raw(buf as u64, n);
        left -= n;
        writes += 1;
    }
    Line::new()
        .str(b"\nio: ")
        .dec(bytes)
        .str(b" bytes in ")
        .dec(writes)
        .str(b" writes of up to ")
        .dec(batch)
        .str(b"\n")
        .send();
    0
}

/// `io BYTES --batch B --ring`: the same bytes through the shared byte ring of
/// [`vmscope_abi::ring`]: copied into guest memory B at a time, taken out by a VMM thread,
/// with a kick (a doorbell write, no VMM exit) only when that thread said it sleeps.
#[no_mangle]
#[inline(never)]
pub fn workload_io_ring(bytes: u64, batch: u64) -> u32 {
    use vmscope_abi::layout::{RING_DATA_GPA, RING_HEADER_GPA};
    use vmscope_abi::ring::{CONSUMER_SLEEPING, HEAD, RING_SIZE, TAIL};
    let batch = batch.min(RING_SIZE);
    // SAFETY (the three): the ring header is guest memory at a fixed, aligned address that
    // only this workload and the VMM's consumer use, each through atomics.
    let head = unsafe { &*((RING_HEADER_GPA + HEAD) as *const AtomicU64) };
    let tail = unsafe { &*((RING_HEADER_GPA + TAIL) as *const AtomicU64) };
    let sleeping =
        unsafe { &*((RING_HEADER_GPA + CONSUMER_SLEEPING) as *const core::sync::atomic::AtomicU32) };
    let data = RING_DATA_GPA as *mut u8;
    let start = hypercall::wall_time();
    let (mut produced, mut batches, mut kicks) = (head.load(Ordering::SeqCst), 0u64, 0u64);
    let end = produced + bytes;
    while produced < end {
        let n = (end - produced).min(batch);
        // Wait for room: the consumer is awake while the ring holds data.
        while produced + n - tail.load(Ordering::Acquire) > RING_SIZE {
            core::hint::spin_loop();
        }
        for i in 0..n {
            let at = (produced + i) % RING_SIZE;
            // SAFETY: `at` < RING_SIZE: inside the ring's data area.
            unsafe {
                core::ptr::write_volatile(
                    data.add(at as usize),
                    if (produced + i) % 64 == 63 { b'\n' } else { b'.' },
                )
            };
        }
        produced += n;
        batches += 1;
        head.store(produced, Ordering::SeqCst);
        if sleeping.load(Ordering::SeqCst) != 0 {
            hypercall::outl(vmscope_abi::PORT_DOORBELL, 0);
            kicks += 1;
        }
    }
    // Done when the consumer has taken everything.
    while tail.load(Ordering::Acquire) != produced {
        core::hint::spin_loop();
    }
    let ns = hypercall::wall_time().saturating_sub(start);
    Line::new()
        .str(b"\nio: ")
        .dec(bytes)
        .str(b" bytes in ")
        .dec(batches)
        .str(b" batches of up to ")
        .dec(batch)
        .str(b" through the shared ring, ")
        .dec(kicks)
        .str(b" kicks, in ")
        .dec(ns)
        .str(b" ns\n")
        .send();
    0
}

/// Ends a timed loop's line: `<name>: N <what> in T ns`, timed with the wall-clock
/// hypercall (one exit before and one after the loop).
fn report_timed(name: &[u8], n: u64, what: &[u8], start_ns: u64) {
    let ns = hypercall::wall_time().saturating_sub(start_ns);
    Line::new().str(name).str(b": ").dec(n).str(b" ").str(what).str(b" in ").dec(ns).str(b" ns\n").send();
}

/// `cpuid N`: N `cpuid` instructions (leaf 0). KVM answers `cpuid` inside the kernel, so
/// none of them should reach the VMM; prints the hypervisor's signature (leaf 0x40000000)
/// and the loop's time.
#[no_mangle]
#[inline(never)]
pub fn workload_cpuid(n: u64) -> u32 {
    // SAFETY (both): `cpuid` exists on every x86_64 CPU and only writes registers.
    let sig = unsafe { core::arch::x86_64::__cpuid(0x4000_0000) };
    let mut name = [0u8; 12];
    // Byte by byte: `copy_from_slice` could panic, which would link core::fmt (SSE).
    for (dst, src) in name.iter_mut().zip([sig.ebx, sig.ecx, sig.edx].iter().flat_map(|r| r.to_le_bytes())) {
        *dst = src;
    }
    let printable = name.iter().all(|b| b.is_ascii_graphic() || *b == 0);
    Line::new()
        .str(b"cpuid: hypervisor signature '")
        .str(if printable { name.split(|b| *b == 0).next().unwrap_or(&[]) } else { b"?" })
        .str(b"'\n")
        .send();
    let start = hypercall::wall_time();
    let mut acc = 0u32;
    for _ in 0..n {
        // SAFETY: as above.
        let r = unsafe { core::arch::x86_64::__cpuid(0) };
        acc = acc.wrapping_add(r.eax);
    }
    core::hint::black_box(acc);
    report_timed(b"cpuid", n, b"cpuid instructions", start);
    0
}

/// `mmio N`: N 32-bit stores to [`vmscope_abi::MMIO_PROBE_GPA`], a page no memory backs:
/// each one is an MMIO exit to the VMM.
#[no_mangle]
#[inline(never)]
pub fn workload_mmio(boot: &BootInfo, n: u64) -> u32 {
    if boot.mem_size > vmscope_abi::MMIO_PROBE_GPA {
        console::write(b"mmio: guest memory covers the MMIO probe address\n");
        return 3;
    }
    let reg = vmscope_abi::MMIO_PROBE_GPA as *mut u32;
    let start = hypercall::wall_time();
    for i in 0..n {
        // SAFETY: the VMM maps the probe page (uncached) and answers each store as MMIO.
        unsafe { core::ptr::write_volatile(reg, i as u32) };
    }
    report_timed(b"mmio", n, b"stores to the MMIO probe", start);
    0
}

/// `doorbell N`: N writes to [`vmscope_abi::PORT_DOORBELL`], which the VMM registers as a
/// KVM ioeventfd: the host kernel signals an eventfd and resumes the guest, no VMM exit.
#[no_mangle]
#[inline(never)]
pub fn workload_doorbell(n: u64) -> u32 {
    let start = hypercall::wall_time();
    for i in 0..n {
        hypercall::outl(vmscope_abi::PORT_DOORBELL, i as u32);
    }
    report_timed(b"doorbell", n, b"doorbell writes", start);
    0
}

/// `triple-fault`: `ud2` with no IDT.
#[no_mangle]
#[inline(never)]
pub fn workload_triple_fault() -> u32 {
    console::write(b"triple-fault: executing ud2 with no IDT\n");
    // SAFETY: deliberately faults; the VMM reports the triple fault.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    1
}

/// `spin`: loops forever (for `--timeout`).
#[no_mangle]
#[inline(never)]
pub fn workload_spin() -> u32 {
    console::write(b"spin: looping forever\n");
    loop {
        core::hint::spin_loop();
    }
}

/// `sse`: one SSE instruction. At CPL0 on PVM, KVM's emulator cannot run it.
#[no_mangle]
#[inline(never)]
pub fn workload_sse(boot: &BootInfo) -> u32 {
    console::write(b"sse: executing movd xmm0, eax\n");
    // SAFETY: movd into xmm0 has no memory effects; xmm0 is not used by this guest.
    unsafe { core::arch::asm!("movd xmm0, eax", in("eax") 0x5eu32, options(nomem, nostack)) };
    Line::new().str(b"sse: ok at ring ").dec(u64::from(boot.ring)).str(b"\n").send();
    0
}

/// `bad-hypercall`: a console write whose buffer lies outside guest memory must be
/// refused (ret = u64::MAX), not crash the VMM.
#[no_mangle]
#[inline(never)]
pub fn workload_bad_hypercall(boot: &BootInfo) -> u32 {
    let ret = hypercall::console_write_raw(boot.mem_size + 0x1000, 16);
    if ret == u64::MAX {
        console::write(b"bad-hypercall: the VMM refused a buffer outside guest memory\n");
        0
    } else {
        Line::new().str(b"bad-hypercall: unexpected answer ").hex(ret).str(b"\n").send();
        1
    }
}

/// `hostile CASE`: one bad thing done to the VMM (see [`crate::hostile`] and
/// [`crate::hostile_virtio`]).
#[no_mangle]
#[inline(never)]
pub fn workload_hostile(boot: &BootInfo, case: &[u8]) -> u32 {
    if let Some(code) = crate::hostile::run(boot, case).or_else(|| crate::hostile_virtio::run(boot, case)) {
        return code;
    }
    Line::new().str(b"unikernel: unknown hostile case '").str(case).str(b"'; the cases: ").send();
    console::write(crate::hostile::NAMES);
    console::write(crate::hostile_virtio::NAMES);
    console::write(b"\n");
    2
}
