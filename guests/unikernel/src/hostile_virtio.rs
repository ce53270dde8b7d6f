//! The virtio cases of `hostile NAME` (run with `--disk IMAGE`): a driver that breaks the
//! virtio-mmio transport's rules or posts broken virtqueues. Each prints
//! `hostile NAME: ` and what the guest saw afterwards: the device status register, the
//! used ring's index and first length, the request's status byte (0xff = untouched).

use crate::console::Line;
use crate::hostile;
use crate::virtio::{
    self, blk, reg, status, Device, Layout, QUEUE_SIZE, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};
use vmscope_abi::BootInfo;

/// Names for the unknown-case message.
pub const NAMES: &[u8] =
    b"mmio-unaligned mmio-wide mmio-byte ro-registers write-only-read window-past-device \
config-write features-garbage no-version-1 queue-size-not-pow2 queue-size-too-big queue-size-truncated \
queue-size-zero setup-after-driver-ok notify-before-setup notify-missing-queue notify-not-ready \
desc-loop indices-far-ahead next-out-of-range buffer-outside-ram buffer-straddles-ram \
status-read-only header-writable header-short rings-outside-ram ring-straddles-ram reset-mid-request \
sector-out-of-range sector-overflow write-read-only unsupported-type chain-overwrites-itself \
avail-idx-backwards queue-of-loops";

/// Runs case `name`; `None` if there is no such case.
pub fn run(boot: &BootInfo, name: &[u8]) -> Option<u32> {
    let cases: &[&[u8]] = &[
        b"mmio-unaligned",
        b"mmio-wide",
        b"mmio-byte",
        b"ro-registers",
        b"write-only-read",
        b"window-past-device",
        b"config-write",
        b"features-garbage",
        b"no-version-1",
        b"queue-size-not-pow2",
        b"queue-size-too-big",
        b"queue-size-truncated",
        b"queue-size-zero",
        b"setup-after-driver-ok",
        b"notify-before-setup",
        b"notify-missing-queue",
        b"notify-not-ready",
        b"desc-loop",
        b"indices-far-ahead",
        b"next-out-of-range",
        b"buffer-outside-ram",
        b"buffer-straddles-ram",
        b"status-read-only",
        b"header-writable",
        b"header-short",
        b"rings-outside-ram",
        b"ring-straddles-ram",
        b"reset-mid-request",
        b"sector-out-of-range",
        b"sector-overflow",
        b"write-read-only",
        b"unsupported-type",
        b"chain-overwrites-itself",
        b"avail-idx-backwards",
        b"queue-of-loops",
    ];
    if !cases.contains(&name) {
        return None;
    }
    let dev = match Device::find() {
        Ok(d) => d,
        Err(e) => {
            hostile::done(name).str(e).str(b"\n").send();
            return Some(3);
        }
    };
    let l = Layout::at(boot.free_start);
    let mut out = hostile::done(name);
    run_case(boot, name, &dev, &l, &mut out);
    out.str(b"\n").send();
    Some(0)
}

/// Appends `status S used N len L blk B`.
fn outcome(out: &mut Line, dev: &Device, l: &Layout) {
    out.str(b"status ")
        .hex(u64::from(dev.status()))
        .str(b" used ")
        .dec(u64::from(virtio::used_idx(l)))
        .str(b" len ")
        .dec(u64::from(virtio::used_len(l, 0, QUEUE_SIZE)))
        .str(b" blk ")
        .hex(u64::from(virtio::r8(l.status_byte())));
}

/// Posts the request in descriptors 0-2 and notifies queue 0.
fn submit(dev: &Device, l: &Layout) {
    virtio::make_available(l, QUEUE_SIZE, 0);
    dev.notify(0);
}

/// A well-formed read of one sector into the data page (descriptors 0-2).
fn read_sector(l: &Layout, sector: u64) {
    virtio::request(l, blk::IN, sector, l.data, 512, VIRTQ_DESC_F_WRITE);
}

/// What most cases do: bring the device up with queue 0 at `l`, write a read of sector 0
/// in descriptors 0-2, let `spoil` break one thing about it, post it, notify, and append
/// the outcome.
fn one_request(dev: &Device, l: &Layout, out: &mut Line, spoil: impl FnOnce()) {
    dev.bring_up(l);
    read_sector(l, 0);
    spoil();
    submit(dev, l);
    outcome(out, dev, l);
}

fn run_case(boot: &BootInfo, name: &[u8], dev: &Device, l: &Layout, out: &mut Line) {
    let mem = boot.mem_size;
    let base = dev.base();
    match name {
        // A 32-bit read at a misaligned offset inside MagicValue.
        b"mmio-unaligned" => {
            out.str(b"read ").hex(u64::from(virtio::r32(base + 2)));
        }
        // An 8-byte read of MagicValue/Version.
        b"mmio-wide" => {
            // SAFETY: an MMIO load from the mapped device window.
            let v = unsafe { core::ptr::read_volatile(base as *const u64) };
            out.str(b"read ").hex(v);
        }
        // A 1-byte write to Status, then a 2-byte one.
        b"mmio-byte" => {
            virtio::w8(base + reg::STATUS, status::ACKNOWLEDGE as u8);
            virtio::w16(base + reg::STATUS, status::ACKNOWLEDGE as u16);
            out.str(b"status ").hex(u64::from(dev.status()));
        }
        // Writes to six read-only registers, then reads them back.
        b"ro-registers" => {
            for r in [
                reg::MAGIC_VALUE,
                reg::VERSION,
                reg::DEVICE_ID,
                reg::DEVICE_FEATURES,
                reg::QUEUE_NUM_MAX,
                reg::INTERRUPT_STATUS,
            ] {
                dev.write(r, 0xdead_beef);
            }
            out.str(b"magic ")
                .hex(u64::from(dev.read(reg::MAGIC_VALUE)))
                .str(b" version ")
                .dec(u64::from(dev.read(reg::VERSION)))
                .str(b" id ")
                .dec(u64::from(dev.read(reg::DEVICE_ID)))
                .str(b" max ")
                .dec(u64::from(dev.read(reg::QUEUE_NUM_MAX)));
        }
        // Reads of four write-only registers.
        b"write-only-read" => {
            let mut sum = 0u64;
            for r in [reg::DRIVER_FEATURES, reg::QUEUE_NUM, reg::QUEUE_NOTIFY, reg::QUEUE_DESC_LOW] {
                sum += u64::from(dev.read(r));
            }
            out.str(b"sum ").hex(sum);
        }
        // The window after the only device: nothing there.
        b"window-past-device" => {
            out.str(b"read ").hex(u64::from(virtio::r32(base + 0x1000)));
            virtio::w32(base + 0x1070, 1);
        }
        // A write over the capacity in the (read-only) configuration space, then a read
        // far past its end.
        b"config-write" => {
            dev.write(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
            let before = dev.read(reg::CONFIG);
            dev.write(reg::CONFIG, 1);
            out.str(b"capacity ")
                .dec(u64::from(before))
                .str(b" then ")
                .dec(u64::from(dev.read(reg::CONFIG)))
                .str(b" far ")
                .hex(u64::from(dev.read(0xffc)));
        }
        // Accept every feature bit, then FEATURES_OK.
        b"features-garbage" => {
            dev.write(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
            for sel in 0..2 {
                dev.write(reg::DRIVER_FEATURES_SEL, sel);
                dev.write(reg::DRIVER_FEATURES, u32::MAX);
            }
            dev.write(reg::DRIVER_FEATURES_SEL, 7);
            dev.write(reg::DRIVER_FEATURES, u32::MAX);
            dev.write(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
            out.str(b"status ").hex(u64::from(dev.status()));
        }
        // FEATURES_OK without VIRTIO_F_VERSION_1.
        b"no-version-1" => {
            dev.write(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
            dev.write(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
            out.str(b"status ").hex(u64::from(dev.status()));
        }
        // Queue sizes the device must refuse; the queue keeps its maximum, so a driver that
        // believed its size sees a broken queue, not a crash. Then one read of sector 0.
        b"queue-size-not-pow2" | b"queue-size-too-big" | b"queue-size-truncated" | b"queue-size-zero" => {
            let size = match name {
                b"queue-size-not-pow2" => 100,
                b"queue-size-too-big" => 512,
                b"queue-size-truncated" => 0x1_0008,
                _ => 0,
            };
            dev.negotiate();
            dev.setup_queue(l, size);
            dev.driver_ok();
            read_sector(l, 0);
            submit(dev, l);
            outcome(out, dev, l);
        }
        // Moving the descriptor table after DRIVER_OK, then a request.
        b"setup-after-driver-ok" => {
            one_request(dev, l, out, || dev.write(reg::QUEUE_DESC_LOW, (mem + 0x1000) as u32))
        }
        // A request posted and notified before any set-up.
        b"notify-before-setup" => {
            dev.write(reg::STATUS, 0);
            read_sector(l, 0);
            submit(dev, l);
            outcome(out, dev, l);
        }
        // Notifications for a queue the device does not have, and garbage.
        b"notify-missing-queue" => {
            dev.bring_up(l);
            dev.notify(1);
            dev.notify(0xffff);
            dev.notify(u32::MAX);
            outcome(out, dev, l);
        }
        // DRIVER_OK with queue 0 never made ready, then a request.
        b"notify-not-ready" => {
            dev.negotiate();
            dev.driver_ok();
            read_sector(l, 0);
            submit(dev, l);
            outcome(out, dev, l);
        }
        // Header → data → header → … : a chain that loops.
        b"desc-loop" => one_request(dev, l, out, || {
            virtio::desc(l, 1, l.data, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0)
        }),
        // The available index 200 entries ahead of a queue of 8.
        b"indices-far-ahead" => {
            dev.bring_up(l);
            read_sector(l, 0);
            virtio::w16(l.avail + 2, 200);
            dev.notify(0);
            outcome(out, dev, l);
        }
        // A chain whose `next` is past the end of the table.
        b"next-out-of-range" => one_request(dev, l, out, || {
            virtio::desc(l, 1, l.data, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, QUEUE_SIZE + 3)
        }),
        // A data buffer in the hole above memory, then one across memory's end.
        b"buffer-outside-ram" | b"buffer-straddles-ram" => {
            let at = if name == b"buffer-outside-ram" { 0xe000_0000 } else { mem - 256 };
            one_request(dev, l, out, || virtio::request(l, blk::IN, 0, at, 512, VIRTQ_DESC_F_WRITE));
        }
        // The status descriptor without the WRITE flag: nothing for the device to write.
        b"status-read-only" => one_request(dev, l, out, || virtio::desc(l, 2, l.status_byte(), 1, 0, 0)),
        // The header in a device-writable descriptor (no readable header at all).
        b"header-writable" => one_request(dev, l, out, || {
            virtio::desc(l, 0, l.header, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1)
        }),
        // A header of 8 bytes instead of 16, followed straight by the status byte.
        b"header-short" => one_request(dev, l, out, || virtio::desc(l, 0, l.header, 8, VIRTQ_DESC_F_NEXT, 2)),
        // The used ring in the hole above memory; then the available ring across the end
        // of memory.
        b"rings-outside-ram" | b"ring-straddles-ram" => {
            dev.negotiate();
            dev.setup_queue(l, u32::from(QUEUE_SIZE));
            let (r, at) = if name == b"rings-outside-ram" {
                (reg::QUEUE_DEVICE_LOW, 0xe000_0000u64)
            } else {
                (reg::QUEUE_DRIVER_LOW, mem - 4)
            };
            // Set-up registers stay writable until DRIVER_OK: this overwrites a good address.
            dev.write(r, at as u32);
            dev.driver_ok();
            read_sector(l, 0);
            submit(dev, l);
            outcome(out, dev, l);
        }
        // A request posted, the device reset before the notification, the notification;
        // then a fresh bring-up and the same request again.
        b"reset-mid-request" => {
            dev.bring_up(l);
            read_sector(l, 0);
            virtio::make_available(l, QUEUE_SIZE, 0);
            dev.write(reg::STATUS, 0);
            dev.notify(0);
            out.str(b"after reset ");
            outcome(out, dev, l);
            for i in 0..0x3000u64 {
                virtio::w8(l.desc + i, 0);
            }
            out.str(b"; again ");
            one_request(dev, l, out, || {});
        }
        // Reads at the capacity and at sector 2^64 - 1; a write (read-only disk); a
        // request type that does not exist.
        b"sector-out-of-range" | b"sector-overflow" | b"write-read-only" | b"unsupported-type" => {
            one_request(dev, l, out, || {
                let capacity =
                    u64::from(dev.read(reg::CONFIG)) | (u64::from(dev.read(reg::CONFIG + 4)) << 32);
                match name {
                    b"sector-out-of-range" => read_sector(l, capacity),
                    b"sector-overflow" => read_sector(l, u64::MAX),
                    b"write-read-only" => virtio::request(l, blk::OUT, 0, l.data, 512, 0),
                    _ => virtio::request(l, 0xdead, 0, l.data, 512, VIRTQ_DESC_F_WRITE),
                }
            })
        }
        // A read whose data buffer is the queue's own descriptor table and available ring:
        // the device overwrites the chain it is working on with the disk's bytes (0xab),
        // and the available index with 0xabab.
        b"chain-overwrites-itself" => {
            one_request(dev, l, out, || virtio::request(l, blk::IN, 0, l.desc, 0x2000, VIRTQ_DESC_F_WRITE))
        }
        // One good request, then the available index moved back to 0 and a notification.
        b"avail-idx-backwards" => {
            dev.bring_up(l);
            read_sector(l, 0);
            submit(dev, l);
            virtio::w16(l.avail + 2, 0);
            dev.notify(0);
            outcome(out, dev, l);
        }
        // A full queue (the device's largest, at most 256 entries: the layout's page)
        // whose descriptors all say NEXT, one ring through the whole table, with every
        // entry in flight and no notification, so the device never looks. The guest then
        // calls `hostile_queue_posted`, where a debugger stops to print the queue (`vq 0 0`
        // must stay bounded), and goes on.
        b"queue-of-loops" => {
            dev.negotiate();
            let size = dev.read(reg::QUEUE_NUM_MAX).clamp(1, 256) as u16;
            dev.setup_queue(l, u32::from(size));
            dev.driver_ok();
            for i in 0..size {
                virtio::desc(l, i, l.data, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, (i + 1) % size);
                virtio::make_available(l, size, i);
            }
            out.dec(u64::from(hostile_queue_posted(size))).str(b" chains posted, ");
            outcome(out, dev, l);
        }
        _ => {}
    }
}

/// Where a debugger stops (`--break hostile_queue_posted`) to look at the queue
/// `queue-of-loops` posted; returns the queue size it was given.
#[no_mangle]
#[inline(never)]
pub extern "C" fn hostile_queue_posted(size: u16) -> u16 {
    core::hint::black_box(size)
}
