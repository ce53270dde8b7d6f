//! A minimal virtio-mmio driver (virtio 1.2, 4.2.3) for one virtio-blk device and one split
//! virtqueue, polled (an ELF guest under vmscope has no interrupt controller; the VMM
//! handles a notification during the `QueueNotify` write, so the used ring is up to date
//! when the write returns). It exists for the hostile workloads: every step can be done
//! out of order or with bad values on purpose.

use crate::paging;

/// Where vmscope puts the first virtio-mmio window (`vmm::devices::mmio_bus::MMIO_BASE`).
pub const MMIO_BASE: u64 = 0xd000_0000;

/// Register offsets (virtio 1.2, table 4.1).
pub mod reg {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG: u64 = 0x100;
}

/// Device status bits (2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
}

/// Descriptor flags (2.7.5).
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// The device writes this buffer.
pub const VIRTQ_DESC_F_WRITE: u16 = 2;

/// virtio-blk request types (5.2.6).
pub mod blk {
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
}

/// Entries in the queue this driver sets up.
pub const QUEUE_SIZE: u16 = 8;

/// Where the queue and its buffers live in guest memory: one page each.
#[derive(Clone, Copy)]
pub struct Layout {
    /// The descriptor table (16 bytes per entry).
    pub desc: u64,
    /// The available ring (`flags`, `idx`, `ring[]`).
    pub avail: u64,
    /// The used ring (`flags`, `idx`, `ring[]` of `{id, len}`).
    pub used: u64,
    /// A request header (16 bytes) at +0, the status byte at +0x100.
    pub header: u64,
    /// A data page.
    pub data: u64,
}

impl Layout {
    /// Five zeroed pages from `free_start`.
    pub fn at(free_start: u64) -> Self {
        let base = (free_start + 0xfff) & !0xfff;
        for i in 0..5 * 0x1000 {
            // SAFETY: the free area after the image is this guest's to use.
            unsafe { core::ptr::write_volatile((base + i) as *mut u8, 0) };
        }
        Self {
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            header: base + 0x3000,
            data: base + 0x4000,
        }
    }

    /// The status byte's address.
    pub fn status_byte(&self) -> u64 {
        self.header + 0x100
    }
}

/// Volatile accesses to guest memory the device also touches.
pub fn w16(addr: u64, v: u16) {
    // SAFETY: identity-mapped guest memory (or a hostile address a case chose on purpose).
    unsafe { core::ptr::write_volatile(addr as *mut u16, v) }
}
/// See [`w16`].
pub fn w32(addr: u64, v: u32) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}
/// See [`w16`].
pub fn w64(addr: u64, v: u64) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}
/// See [`w16`].
pub fn w8(addr: u64, v: u8) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(addr as *mut u8, v) }
}
/// See [`w16`].
pub fn r8(addr: u64) -> u8 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}
/// See [`w16`].
pub fn r16(addr: u64) -> u16 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(addr as *const u16) }
}
/// See [`w16`].
pub fn r32(addr: u64) -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// The device's register window.
pub struct Device {
    base: u64,
}

impl Device {
    /// Maps the first window (uncached) and checks that a virtio-blk device answers there.
    pub fn find() -> Result<Self, &'static [u8]> {
        paging::map_mmio_2m(MMIO_BASE)?;
        let dev = Self { base: MMIO_BASE };
        if dev.read(reg::MAGIC_VALUE) != 0x7472_6976 || dev.read(reg::VERSION) != 2 {
            return Err(b"no virtio-mmio device at 0xd0000000 (run with --disk IMAGE)");
        }
        if dev.read(reg::DEVICE_ID) != 2 {
            return Err(b"the device at 0xd0000000 is not virtio-blk");
        }
        Ok(dev)
    }

    /// A 32-bit register read.
    pub fn read(&self, off: u64) -> u32 {
        r32(self.base + off)
    }

    /// A 32-bit register write.
    pub fn write(&self, off: u64, v: u32) {
        w32(self.base + off, v)
    }

    /// The window's base address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Reset, ACKNOWLEDGE, DRIVER, VERSION_1 only, FEATURES_OK (4.2.3.1); returns false
    /// if the device did not keep FEATURES_OK.
    pub fn negotiate(&self) -> bool {
        self.write(reg::STATUS, 0);
        self.write(reg::STATUS, status::ACKNOWLEDGE);
        self.write(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        self.write(reg::DRIVER_FEATURES_SEL, 0);
        self.write(reg::DRIVER_FEATURES, 0);
        self.write(reg::DRIVER_FEATURES_SEL, 1);
        self.write(reg::DRIVER_FEATURES, 1); // VIRTIO_F_VERSION_1 is bit 32
        self.write(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        self.read(reg::STATUS) & status::FEATURES_OK != 0
    }

    /// Queue 0 at `l` with `size` entries, made ready (4.2.3.2); does not set DRIVER_OK.
    pub fn setup_queue(&self, l: &Layout, size: u32) {
        self.write(reg::QUEUE_SEL, 0);
        self.write(reg::QUEUE_NUM, size);
        self.write(reg::QUEUE_DESC_LOW, l.desc as u32);
        self.write(reg::QUEUE_DESC_HIGH, (l.desc >> 32) as u32);
        self.write(reg::QUEUE_DRIVER_LOW, l.avail as u32);
        self.write(reg::QUEUE_DRIVER_HIGH, (l.avail >> 32) as u32);
        self.write(reg::QUEUE_DEVICE_LOW, l.used as u32);
        self.write(reg::QUEUE_DEVICE_HIGH, (l.used >> 32) as u32);
        self.write(reg::QUEUE_READY, 1);
    }

    /// Sets DRIVER_OK on top of the current status.
    pub fn driver_ok(&self) {
        let s = self.read(reg::STATUS);
        self.write(reg::STATUS, s | status::DRIVER_OK);
    }

    /// Negotiation, queue 0 of [`QUEUE_SIZE`] at `l`, DRIVER_OK.
    pub fn bring_up(&self, l: &Layout) -> bool {
        if !self.negotiate() {
            return false;
        }
        self.setup_queue(l, u32::from(QUEUE_SIZE));
        self.driver_ok();
        self.read(reg::STATUS) & status::DEVICE_NEEDS_RESET == 0
    }

    /// `QueueNotify` for `queue`.
    pub fn notify(&self, queue: u32) {
        self.write(reg::QUEUE_NOTIFY, queue);
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.read(reg::STATUS)
    }
}

/// Writes descriptor `i` of the table at `l.desc`.
pub fn desc(l: &Layout, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let d = l.desc + u64::from(i) * 16;
    w64(d, addr);
    w32(d + 8, len);
    w16(d + 12, flags);
    w16(d + 14, next);
}

/// Puts `head` in the available ring (queue of `size` entries) and advances its index by one.
pub fn make_available(l: &Layout, size: u16, head: u16) {
    let idx = r16(l.avail + 2);
    w16(l.avail + 4 + u64::from(idx % size) * 2, head);
    w16(l.avail + 2, idx.wrapping_add(1));
}

/// Writes a virtio-blk request header: type, reserved, sector.
pub fn header(l: &Layout, kind: u32, sector: u64) {
    w32(l.header, kind);
    w32(l.header + 4, 0);
    w64(l.header + 8, sector);
}

/// The three-descriptor request of 5.2.6: header (read), data (`data_flags`), status
/// (written), at descriptors 0, 1, 2; the status byte preset to 0xff.
pub fn request(l: &Layout, kind: u32, sector: u64, data_addr: u64, data_len: u32, data_flags: u16) {
    header(l, kind, sector);
    w8(l.status_byte(), 0xff);
    desc(l, 0, l.header, 16, VIRTQ_DESC_F_NEXT, 1);
    desc(l, 1, data_addr, data_len, data_flags | VIRTQ_DESC_F_NEXT, 2);
    desc(l, 2, l.status_byte(), 1, VIRTQ_DESC_F_WRITE, 0);
}

/// The used ring's index.
pub fn used_idx(l: &Layout) -> u16 {
    r16(l.used + 2)
}

/// The `len` of used element `i`.
pub fn used_len(l: &Layout, i: u16, size: u16) -> u32 {
    r32(l.used + 4 + u64::from(i % size) * 8 + 4)
}
