//! The MMIO bus: guest-physical windows in the 32-bit hole, one per virtio device, each with
//! its interrupt line, and the `virtio_mmio.device=` entries that tell Linux about them.

use super::virtio::mmio::{MmioTransport, MMIO_WINDOW};
use inspect::virtqueue::QueueLayout;
use std::sync::{Arc, Mutex, PoisonError};

/// Guest-physical address of the first device window (in the hole above RAM).
pub const MMIO_BASE: u64 = 0xd000_0000;
/// The first interrupt line for virtio devices: 5, 6, 7 are free on a PC without ISA cards
/// (4 is COM1).
pub const FIRST_IRQ: u32 = 5;
/// Devices on one bus: one per free legacy interrupt line.
pub const MAX_DEVICES: usize = 3;

/// One device on the bus.
#[derive(Clone)]
struct Slot {
    base: u64,
    irq: u32,
    transport: Arc<Mutex<MmioTransport>>,
}

/// What the `vq` command and the TUI show of a device.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MmioDeviceInfo {
    /// Index on the bus.
    pub index: usize,
    /// Short name ("blk").
    pub name: String,
    /// virtio device ID.
    pub device_id: u32,
    /// Window base.
    pub base: u64,
    /// Interrupt line.
    pub irq: u32,
    /// Device status register.
    pub status: u32,
    /// Negotiated features.
    pub features: u64,
    /// Each queue's layout (None until the driver made it ready).
    pub queues: Vec<Option<QueueLayout>>,
    /// Notifications per queue.
    pub notifications: Vec<u64>,
    /// Interrupts raised.
    pub interrupts: u64,
    /// Register accesses refused.
    pub bad_accesses: u64,
    /// The device's own counters.
    pub counters: Vec<(String, u64)>,
}

/// Errors from adding a device.
#[derive(Debug, thiserror::Error)]
pub enum MmioBusError {
    /// All windows are taken.
    #[error("at most {MAX_DEVICES} virtio devices are supported")]
    Full,
}

/// MMIO devices, shared by all vCPUs.
#[derive(Clone, Default)]
pub struct MmioBus {
    slots: Vec<Slot>,
}

impl MmioBus {
    /// The window and interrupt line the next device will get.
    pub fn next_slot(&self) -> Result<(u64, u32), MmioBusError> {
        let i = self.slots.len();
        if i >= MAX_DEVICES {
            return Err(MmioBusError::Full);
        }
        Ok((MMIO_BASE + i as u64 * MMIO_WINDOW, FIRST_IRQ + i as u32))
    }

    /// Adds a device at [`MmioBus::next_slot`].
    pub fn add(&mut self, transport: MmioTransport) -> Result<(u64, u32), MmioBusError> {
        let (base, irq) = self.next_slot()?;
        self.slots.push(Slot { base, irq, transport: Arc::new(Mutex::new(transport)) });
        Ok((base, irq))
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no devices.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Each device's window base, interrupt line and transport, in bus order (for a
    /// snapshot, which saves and rebuilds them in the same order).
    pub(crate) fn transports(&self) -> Vec<(u64, u32, Arc<Mutex<MmioTransport>>)> {
        self.slots.iter().map(|s| (s.base, s.irq, s.transport.clone())).collect()
    }

    /// The kernel command-line entries that declare the devices to Linux.
    pub fn kernel_cmdline(&self) -> String {
        self.slots
            .iter()
            .map(|s| format!("virtio_mmio.device={}K@{:#x}:{}", MMIO_WINDOW >> 10, s.base, s.irq))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn find(&self, addr: u64) -> Option<(&Slot, u64)> {
        self.slots.iter().find_map(|s| {
            let off = addr.checked_sub(s.base)?;
            (off < MMIO_WINDOW).then_some((s, off))
        })
    }

    /// A guest read at `addr`; false if no device is there (the caller answers all ones).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((slot, off)) = self.find(addr) else { return false };
        slot.transport.lock().unwrap_or_else(PoisonError::into_inner).read(off, data);
        true
    }

    /// A guest write at `addr`; false if no device is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        let Some((slot, off)) = self.find(addr) else { return false };
        slot.transport.lock().unwrap_or_else(PoisonError::into_inner).write(off, data);
        true
    }

    /// What is on the bus.
    pub fn devices(&self) -> Vec<MmioDeviceInfo> {
        self.slots
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let t = s.transport.lock().unwrap_or_else(PoisonError::into_inner);
                let (notifications, interrupts, bad_accesses) = t.counters();
                MmioDeviceInfo {
                    index,
                    name: t.device().name().to_string(),
                    device_id: t.device().device_type(),
                    base: s.base,
                    irq: s.irq,
                    status: t.status(),
                    features: t.negotiated_features(),
                    queues: (0..t.queue_count()).map(|q| t.queue_layout(q)).collect(),
                    notifications,
                    interrupts,
                    bad_accesses,
                    counters: t.device().counters().into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::Block;
    use crate::vstate::memory::create_guest_memory;
    use std::io::Write;

    #[test]
    fn windows_and_cmdline() {
        let mut img = tempfile::NamedTempFile::new().unwrap();
        img.write_all(&[0; 4096]).unwrap();
        let mem = create_guest_memory(4 << 20).unwrap();
        let mut bus = MmioBus::default();
        for _ in 0..MAX_DEVICES {
            let dev = Block::open(img.path(), true).unwrap();
            bus.add(MmioTransport::new(Box::new(dev), mem.clone(), None)).unwrap();
        }
        assert!(bus.next_slot().is_err());
        assert_eq!(
            bus.kernel_cmdline(),
            "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6 virtio_mmio.device=4K@0xd0002000:7"
        );
        let mut magic = [0u8; 4];
        assert!(bus.read(0xd000_1000, &mut magic));
        assert_eq!(&magic, b"virt");
        assert!(!bus.read(0xd000_3000, &mut magic));
        assert!(!bus.write(0xcfff_fffc, &magic));
        let info = bus.devices();
        assert_eq!((info[2].name.as_str(), info[2].irq, info[2].device_id), ("blk", 7, 2));
    }
}
