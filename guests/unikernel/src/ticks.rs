//! `ticks N [SPIN] [--every MS]`: prints `tick 1` … `tick N`, one console line each, with
//! SPIN iterations of a busy loop between them and, with `--every`, a sleep of MS
//! milliseconds after each (the VMM's sleep hypercall: the vCPU costs nothing meanwhile),
//! then `ticks: done N`, and exits with N mod 256.
//! A snapshot, restore or migration in the middle shows as a gap or a repeat in the
//! sequence if anything was lost. `tick_reached` (never inlined) is where a debugger
//! breaks on each tick; `TICKS_SEQ` holds the last number printed.

use crate::console::Line;
use core::sync::atomic::{AtomicU64, Ordering};

/// The last sequence number printed.
#[no_mangle]
pub static TICKS_SEQ: AtomicU64 = AtomicU64::new(0);

/// Prints tick `seq` (a breakpoint here stops before the line is printed).
#[no_mangle]
#[inline(never)]
pub fn tick_reached(seq: u64) {
    Line::new().str(b"tick ").dec(seq).str(b"\n").send();
    TICKS_SEQ.store(seq, Ordering::SeqCst);
}

/// The workload.
#[no_mangle]
#[inline(never)]
pub fn workload_ticks(n: u64, spin: u64, every_ms: u64) -> u32 {
    for seq in 1..=n {
        for i in 0..spin {
            core::hint::black_box(i);
        }
        tick_reached(seq);
        sleep_ms(every_ms);
    }
    Line::new().str(b"ticks: done ").dec(n).str(b"\n").send();
    (n % 256) as u32
}

/// Sleeps `ms` milliseconds, a second (the ABI's longest sleep) at a time.
fn sleep_ms(ms: u64) {
    let mut left_us = ms.saturating_mul(1000);
    while left_us > 0 {
        let now = left_us.min(u64::from(vmscope_abi::SLEEP_MAX_US));
        crate::hypercall::sleep_us(now as u32);
        left_us -= now;
    }
}
