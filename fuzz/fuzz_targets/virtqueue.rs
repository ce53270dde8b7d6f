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

fuzz_target!(|data: &[u8]| {
    let mut f = common::Fields::new(data);
    let base = f.u64();
    let size = f.u16();
    let (desc, avail, used) = (f.u64(), f.u64(), f.u64());
    let event_idx = f.u8() & 1 != 0;
    let mem = BufferMemory { base: Gpa(base), bytes: f.data.to_vec() };
    let layout =
        QueueLayout { size, desc_table: Gpa(desc), avail_ring: Gpa(avail), used_ring: Gpa(used), event_idx };
    if let Ok(snapshot) = decode(&mem, &layout) {
        // Every chain is bounded by the queue and indirect-table sizes.
        for chain in &snapshot.in_flight {
            assert!(chain.descriptors.len() <= usize::from(size) + 32768);
            let _ = (chain.readable_len(), chain.writable_len());
        }
        let _ = snapshot.to_string();
    }
});
