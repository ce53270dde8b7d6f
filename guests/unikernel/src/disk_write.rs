//! `disk-write N`: a well-behaved virtio-blk driver that writes sectors 0..N (N at most
//! [`MAX_SECTORS`] and at most the disk's capacity), one request at a time, polling the
//! used ring. After each request the device acknowledged with status OK it prints
//! `disk-write: sector I ok`; then `disk-write: N sectors written` and it spins, so that a
//! test can kill the VMM at a moment it chooses (tests/disk_durability.rs). Byte `j` of
//! sector `i` is [`pattern`]`(i, j)`.

use crate::console::Line;
use crate::virtio::{self, blk, reg, Device, Layout, QUEUE_SIZE};
use vmscope_abi::BootInfo;

/// The most sectors one run writes.
pub const MAX_SECTORS: u64 = 64;

/// How many times the driver reads the used index before it gives up on a request (the
/// device answers during the notification's exit, so one read normally suffices).
const POLLS: u32 = 1_000_000;

/// The byte at offset `j` of sector `i`.
pub fn pattern(i: u64, j: u64) -> u8 {
    ((i.wrapping_mul(31) + j) as u8) ^ 0x5a
}

/// Runs the workload; returns the exit code (it only returns on failure).
pub fn run(boot: &BootInfo, n: u64) -> u32 {
    let dev = match Device::find() {
        Ok(d) => d,
        Err(e) => {
            Line::new().str(b"disk-write: ").str(e).str(b"\n").send();
            return 3;
        }
    };
    let capacity = u64::from(dev.read(reg::CONFIG)) | (u64::from(dev.read(reg::CONFIG + 4)) << 32);
    if n == 0 || n > MAX_SECTORS || n > capacity {
        Line::new()
            .str(b"disk-write: N must be 1..")
            .dec(MAX_SECTORS.min(capacity))
            .str(b" (the disk has ")
            .dec(capacity)
            .str(b" sectors), got ")
            .dec(n)
            .str(b"\n")
            .send();
        return 2;
    }
    let l = Layout::at(boot.free_start);
    if !dev.bring_up(&l) {
        Line::new()
            .str(b"disk-write: device refused set-up, status ")
            .hex(u64::from(dev.status()))
            .str(b"\n")
            .send();
        return 3;
    }
    for i in 0..n {
        for j in 0..512 {
            virtio::w8(l.data + j, pattern(i, j));
        }
        let before = virtio::used_idx(&l);
        virtio::request(&l, blk::OUT, i, l.data, 512, 0);
        virtio::make_available(&l, QUEUE_SIZE, 0);
        dev.notify(0);
        let mut polls = 0;
        while virtio::used_idx(&l) == before && polls < POLLS {
            core::hint::spin_loop();
            polls += 1;
        }
        let st = virtio::r8(l.status_byte());
        if virtio::used_idx(&l) == before || st != 0 {
            Line::new()
                .str(b"disk-write: sector ")
                .dec(i)
                .str(b" failed, used ")
                .dec(u64::from(virtio::used_idx(&l)))
                .str(b" status ")
                .hex(u64::from(st))
                .str(b"\n")
                .send();
            return 1;
        }
        Line::new().str(b"disk-write: sector ").dec(i).str(b" ok\n").send();
    }
    Line::new().str(b"disk-write: ").dec(n).str(b" sectors written\n").send();
    loop {
        core::hint::spin_loop();
    }
}
