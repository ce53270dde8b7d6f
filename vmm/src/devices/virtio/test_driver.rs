//! A minimal virtio driver for unit tests: sets a transport up through its registers and
//! puts descriptor chains on queue 0, the way Linux's virtio-mmio driver does. Built for
//! unit tests and, with the `fuzzing` feature, for the fuzz targets in `fuzz/`.

use super::mmio::MmioTransport;
use super::{status, VirtioDevice};
use crate::vstate::memory::{create_guest_memory, GuestMemory};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

/// Where [`Driver::setup`] puts queue 0's descriptor table.
pub const DESC_TABLE: u64 = 0x10000;
/// Where [`Driver::setup`] puts queue 0's available ring.
pub const AVAIL_RING: u64 = 0x11000;
/// Where [`Driver::setup`] puts queue 0's used ring.
pub const USED_RING: u64 = 0x12000;
/// The queue size the driver sets.
pub const DRIVER_QUEUE_SIZE: u16 = 16;
/// Where tests put request buffers.
pub const BUFFERS: u64 = 0x20000;

/// VRING_DESC_F_NEXT.
pub const NEXT: u16 = 1;
/// VRING_DESC_F_WRITE.
pub const WRITE: u16 = 2;

/// A driver for one transport over its own guest memory.
pub struct Driver {
    /// The guest memory the queues live in.
    pub mem: GuestMemory,
    /// The transport under test.
    pub transport: MmioTransport,
    /// The interrupt line the transport raises.
    pub irq: EventFd,
    next_desc: u16,
    avail_idx: u16,
}

impl Driver {
    /// A transport over `device` with 4 MiB of guest memory, not yet set up.
    pub fn new(device: Box<dyn VirtioDevice>) -> Self {
        let mem = create_guest_memory(4 << 20).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let transport = MmioTransport::new(device, mem.clone(), Some(irq.try_clone().unwrap()));
        Self { mem, transport, irq, next_desc: 0, avail_idx: 0 }
    }

    /// Reads the 32-bit register at `offset`.
    pub fn read32(&mut self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.transport.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write32(&mut self, offset: u64, v: u32) {
        self.transport.write(offset, &v.to_le_bytes());
    }

    /// Negotiates `features` (returns whether FEATURES_OK stuck).
    pub fn negotiate(&mut self, features: u64) -> bool {
        self.write32(0x70, 0);
        self.write32(0x70, status::ACKNOWLEDGE);
        self.write32(0x70, status::ACKNOWLEDGE | status::DRIVER);
        self.write32(0x24, 0);
        self.write32(0x20, features as u32);
        self.write32(0x24, 1);
        self.write32(0x20, (features >> 32) as u32);
        self.write32(0x70, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        self.read32(0x70) & status::FEATURES_OK != 0
    }

    /// Sets queue 0 up at the given addresses and sets DRIVER_OK.
    pub fn setup_queue_at(&mut self, desc: u64, avail: u64, used: u64) {
        self.write32(0x30, 0);
        self.write32(0x38, u32::from(DRIVER_QUEUE_SIZE));
        for (reg, addr) in [(0x80, desc), (0x90, avail), (0xa0, used)] {
            self.write32(reg, addr as u32);
            self.write32(reg + 4, (addr >> 32) as u32);
        }
        self.write32(0x44, 1);
        let s = self.read32(0x70);
        self.write32(0x70, s | status::DRIVER_OK);
    }

    /// The whole set-up with the device's own features.
    pub fn setup(&mut self) {
        let features = self.transport.device().features();
        assert!(self.negotiate(features));
        self.setup_queue_at(DESC_TABLE, AVAIL_RING, USED_RING);
    }

    /// Writes a descriptor (raw, as a hostile driver might).
    pub fn write_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(DESC_TABLE + u64::from(index) * 16);
        self.mem.write_obj(addr, at).unwrap();
        self.mem.write_obj(len, GuestAddress(at.0 + 8)).unwrap();
        self.mem.write_obj(flags, GuestAddress(at.0 + 12)).unwrap();
        self.mem.write_obj(next, GuestAddress(at.0 + 14)).unwrap();
    }

    /// Makes descriptor `head` available and bumps avail.idx (without notifying).
    pub fn make_available(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % DRIVER_QUEUE_SIZE);
        self.mem.write_obj(head, GuestAddress(AVAIL_RING + 4 + slot * 2)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem.write_obj(self.avail_idx, GuestAddress(AVAIL_RING + 2)).unwrap();
    }

    /// Puts a chain of (addr, len, device-writable) buffers on the queue and notifies.
    pub fn submit(&mut self, buffers: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, write)) in buffers.iter().enumerate() {
            let index = (head + i as u16) % DRIVER_QUEUE_SIZE;
            let last = i + 1 == buffers.len();
            let flags = if write { WRITE } else { 0 } | if last { 0 } else { NEXT };
            self.write_desc(index, addr, len, flags, (index + 1) % DRIVER_QUEUE_SIZE);
        }
        self.next_desc = (head + buffers.len() as u16) % DRIVER_QUEUE_SIZE;
        self.make_available(head);
        self.notify();
        head
    }

    /// Notifies queue 0.
    pub fn notify(&mut self) {
        self.write32(0x50, 0);
    }

    /// used.idx.
    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(USED_RING + 2)).unwrap()
    }

    /// The used element at ring slot `slot`: (id, len).
    pub fn used_elem(&self, slot: u16) -> (u32, u32) {
        let at = USED_RING + 4 + u64::from(slot % DRIVER_QUEUE_SIZE) * 8;
        (self.mem.read_obj(GuestAddress(at)).unwrap(), self.mem.read_obj(GuestAddress(at + 4)).unwrap())
    }
}
