//! `dirty MIB_PER_S [SECONDS]`: writes guest memory at a chosen rate, one 8-byte store per
//! 4 KiB page, so that MIB_PER_S MiB of pages become dirty each second (what a live
//! migration has to send again), cycling over the free memory the boot info gives.
//! SECONDS (default 10) later it checks every page it wrote holds the last value written
//! there, prints `dirty: verified N pages` (or the first page that does not), and exits
//! with 0 (or 1). A line `dirty: second S` each second shows the guest is alive; a page
//! lost by a migration shows in the check. The pace comes from the wall-clock hypercall,
//! with 1 ms sleeps while ahead.

use crate::console::Line;
use crate::hypercall;
use vmscope_abi::BootInfo;

const PAGE: u64 = 4096;

/// The workload; `words` are its arguments.
#[no_mangle]
#[inline(never)]
pub fn workload_dirty<'a>(boot: &BootInfo, mut words: impl Iterator<Item = &'a [u8]>) -> u32 {
    let rate = words.next().and_then(parse);
    let seconds = match words.next() {
        Some(w) => parse(w),
        None => Some(10),
    };
    let (Some(mib_per_s), Some(seconds), None) = (rate, seconds, words.next()) else {
        Line::new().str(b"unikernel: dirty needs MIB_PER_S and an optional SECONDS\n").send();
        return 2;
    };
    let first = boot.free_start.div_ceil(PAGE);
    let end = boot.free_end / PAGE;
    let npages = end.saturating_sub(first);
    if npages == 0 {
        Line::new().str(b"dirty: no free memory to write\n").send();
        return 3;
    }
    Line::new()
        .str(b"dirty: ")
        .dec(mib_per_s)
        .str(b" MiB/s for ")
        .dec(seconds)
        .str(b" s over ")
        .dec(npages * PAGE >> 20)
        .str(b" MiB\n")
        .send();
    let page_ptr = |k: u64| ((first + k % npages) * PAGE) as *mut u64;
    let pages_per_s = mib_per_s.saturating_mul(256);
    let start = hypercall::wall_time();
    let mut written = 0u64;
    let mut second = 0;
    loop {
        let elapsed = hypercall::wall_time().saturating_sub(start);
        if elapsed >= seconds.saturating_mul(1_000_000_000) {
            break;
        }
        if elapsed / 1_000_000_000 > second {
            second = elapsed / 1_000_000_000;
            Line::new().str(b"dirty: second ").dec(second).str(b"\n").send();
        }
        let due = (u128::from(pages_per_s) * u128::from(elapsed) / 1_000_000_000) as u64;
        if written >= due {
            hypercall::sleep_us(1000);
            continue;
        }
        while written < due {
            // SAFETY: the page lies in [free_start, free_end), memory the boot info gives
            // the workload, identity-mapped.
            unsafe { core::ptr::write_volatile(page_ptr(written), written + 1) };
            written += 1;
        }
    }
    // Every page holds the last k + 1 written to it (k ≡ page mod npages), or 0 if never.
    let checked = written.min(npages);
    for p in 0..checked {
        let last = written - 1 - (written - 1 - p) % npages;
        // SAFETY: as above.
        let found = unsafe { core::ptr::read_volatile(page_ptr(p)) };
        if found != last + 1 {
            Line::new()
                .str(b"dirty: MISMATCH at page ")
                .dec(first + p)
                .str(b": found ")
                .dec(found)
                .str(b", wrote ")
                .dec(last + 1)
                .str(b"\n")
                .send();
            return 1;
        }
    }
    Line::new().str(b"dirty: verified ").dec(checked).str(b" pages, ").dec(written).str(b" writes\n").send();
    0
}

fn parse(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &c| n * 10 + u64::from(c - b'0')))
}
