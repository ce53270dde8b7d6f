//! The virtio-mmio transport and the virtio-blk request path, driven the way a hostile
//! guest driver would: register reads and writes of any width and offset, descriptors and
//! rings written anywhere, queue notifications, through vmm's test driver
//! (`vmm::devices::virtio::test_driver`, the `fuzzing` feature) against a 64 KiB
//! temporary disk image. After the operations, the queue is decoded with `inspect`'s
//! decoder as the `vq` command would.
//!
//! Input: flags u8 (bit 0: negotiate and set queue 0 up first, bit 1: read-only disk) |
//! operations, each an opcode byte and its arguments (see `step`), until the input ends.
#![no_main]

#[path = "common.rs"]
mod common;

use common::Fields;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use vm_memory::{Bytes, GuestAddress};
use vmm::devices::virtio::block::Block;
use vmm::devices::virtio::test_driver::{Driver, BUFFERS};
use vmm::vstate::memory::PhysView;

const DISK_SIZE: usize = 64 << 10;
/// Guest memory of the test driver.
const MEM_SIZE: u64 = 4 << 20;
/// The most operations one input performs.
const MAX_OPS: usize = 512;

/// The disk image: one temporary file per fuzzing process, removed when it ends normally.
fn disk() -> &'static PathBuf {
    static DISK: OnceLock<PathBuf> = OnceLock::new();
    DISK.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("vmscope-fuzz-disk-{}.img", std::process::id()));
        std::fs::write(&path, vec![0x5au8; DISK_SIZE]).expect("write the temporary disk image");
        extern "C" fn remove() {
            if let Some(p) = DISK.get() {
                let _ = std::fs::remove_file(p);
            }
        }
        // SAFETY: `remove` is an `extern "C" fn()` that does not unwind.
        unsafe { libc_atexit(remove) };
        path
    })
}

extern "C" {
    #[link_name = "atexit"]
    fn libc_atexit(f: extern "C" fn()) -> i32;
}

/// An address near the driver's structures or anywhere (including past the end of RAM).
fn addr(f: &mut Fields) -> u64 {
    match f.u8() % 4 {
        0 => BUFFERS + u64::from(f.u16()),
        1 => u64::from(f.u32()) % (MEM_SIZE + 0x1000),
        2 => MEM_SIZE - u64::from(f.u16()),
        _ => f.u64(),
    }
}

fn step(d: &mut Driver, f: &mut Fields) {
    match f.u8() % 10 {
        // A 32-bit register write.
        0 => {
            let (offset, value) = (u64::from(f.u16() & 0x1ff), f.u32());
            d.write32(offset, value);
        }
        // A read of any width at any offset.
        1 => {
            let offset = u64::from(f.u16());
            let mut b = vec![0u8; usize::from(f.u8() % 9)];
            d.transport.read(offset, &mut b);
        }
        // A write of any width at any offset.
        2 => {
            let offset = u64::from(f.u16());
            let n = usize::from(f.u8() % 9);
            let bytes = f.bytes(n).to_vec();
            d.transport.write(offset, &bytes);
        }
        // Guest memory written by the driver (rings, tables, request buffers).
        3 => {
            let at = addr(f);
            let n = usize::from(f.u8());
            let bytes = f.bytes(n).to_vec();
            let _ = d.mem.write_slice(&bytes, GuestAddress(at));
        }
        // A raw descriptor in queue 0's table.
        4 => {
            let (index, a, len, flags, next) = (f.u16() % 16, addr(f), f.u32(), f.u16(), f.u16());
            d.write_desc(index, a, len, flags, next);
        }
        // A head made available.
        5 => d.make_available(f.u16()),
        // A notification for any queue index.
        6 => {
            let q = u32::from(f.u8());
            d.write32(0x50, q);
        }
        // A well-formed request: header (type, sector), data, status.
        7 => {
            let (type_, sector) = (u32::from(f.u8() % 10), u64::from(f.u16()));
            let data_len = u32::from(f.u16());
            let header: Vec<u8> = [type_.to_le_bytes().as_slice(), &[0; 4], &sector.to_le_bytes()].concat();
            let _ = d.mem.write_slice(&header, GuestAddress(BUFFERS));
            let write = type_ == 0 || type_ == 8;
            d.submit(&[
                (BUFFERS, 16, false),
                (BUFFERS + 0x1000, data_len, write),
                (BUFFERS + 0x100, 1, true),
            ]);
        }
        // Interrupt acknowledged.
        8 => {
            let v = f.u32();
            d.write32(0x64, v);
        }
        // The device reset, or queue 0 set up again somewhere else.
        _ => {
            if f.u8() & 1 == 0 {
                d.write32(0x70, 0);
            } else {
                let (desc, avail, used) = (addr(f), addr(f), addr(f));
                d.setup_queue_at(desc, avail, used);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut f = Fields::new(data);
    let flags = f.u8();
    let Ok(block) = Block::open(disk(), flags & 2 != 0) else {
        return;
    };
    let mut d = Driver::new(Box::new(block));
    if flags & 1 != 0 {
        d.setup();
    }
    for _ in 0..MAX_OPS {
        if f.is_empty() {
            break;
        }
        step(&mut d, &mut f);
    }
    let _ = d.transport.counters();
    let _ = d.used_idx();
    for q in 0..d.transport.queue_count() {
        if let Some(layout) = d.transport.queue_layout(q) {
            if let Ok(s) = inspect::virtqueue::decode(&PhysView(&d.mem), &layout) {
                assert!(common::check_queue(&s) > 0);
            }
        }
    }
});
