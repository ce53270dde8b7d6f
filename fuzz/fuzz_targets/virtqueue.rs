//! The split-virtqueue decoder (`inspect::virtqueue::decode`) over arbitrary guest memory
//! and queue fields, as the `vq` command and the TUI use it on a hostile driver's queue.
//!
//! Input: base u64 | size u16 | desc u64 | avail u64 | used u64 | flags u8 (bit 0:
//! EVENT_IDX) | guest memory bytes (at GPA `base`).
#![no_main]

#[path = "common.rs"]
mod common;

use inspect::mem::BufferMemory;
use inspect::virtqueue::{decode, QueueLayout};
use inspect::Gpa;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    /// One guest memory buffer per fuzzing process, refilled with each input's bytes (no
    /// allocation sized by the input on every run).
    static MEM: RefCell<BufferMemory> = RefCell::new(BufferMemory { base: Gpa(0), bytes: Vec::new() });
}

fuzz_target!(|data: &[u8]| {
    let mut f = common::Fields::new(data);
    let base = f.u64();
    let size = f.u16();
    let (desc, avail, used) = (f.u64(), f.u64(), f.u64());
    let event_idx = f.u8() & 1 != 0;
    let layout =
        QueueLayout { size, desc_table: Gpa(desc), avail_ring: Gpa(avail), used_ring: Gpa(used), event_idx };
    MEM.with_borrow_mut(|mem| {
        mem.base = Gpa(base);
        mem.bytes.clear();
        mem.bytes.extend_from_slice(f.data);
        if let Ok(snapshot) = decode(&*mem, &layout) {
            // Within the decoder's bounds, and the first line (sizes and indices) is
            // always there.
            assert!(common::check_queue(&snapshot) > 0);
        }
    });
});
