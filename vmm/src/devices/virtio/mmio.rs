//! The virtio-mmio transport, version 2 (virtio 1.2, 4.2.2): the register window a driver
//! reads and writes, the queue set-up, notifications and the interrupt.

use super::{status, QueueOutcome, VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_MMIO_INT_VRING};
use crate::vstate::memory::GuestMemory;
use inspect::virtqueue::QueueLayout;
use inspect::Gpa;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

mod state;
pub use state::{MmioTransportState, QueueMeta};

/// Size of one device's register window.
pub const MMIO_WINDOW: u64 = 0x1000;

/// "virt" in little endian.
const MAGIC_VALUE: u32 = 0x7472_6976;
/// The modern (non-legacy) register layout.
const MMIO_VERSION: u32 = 2;
/// "VMSC".
const VENDOR_ID: u32 = 0x4353_4d56;

/// Register offsets (virtio 1.2, table 4.1).
mod reg {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
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
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// One device's MMIO window: registers, negotiated features, queues, interrupt.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemory,
    irq: Option<EventFd>,
    queues: Vec<Queue>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    interrupt_status: u32,
    /// Notifications received, per queue.
    notifications: Vec<u64>,
    /// Interrupts raised.
    interrupts: u64,
    /// Register accesses the transport refused (bad width, bad offset, bad state).
    bad_accesses: u64,
}

impl MmioTransport {
    /// A transport for `device`, raising `irq` (if any) when it uses buffers.
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMemory, irq: Option<EventFd>) -> Self {
        let queues = device.queue_max_sizes().iter().map(|&max| Self::new_queue(max)).collect::<Vec<_>>();
        let n = queues.len();
        Self {
            device,
            mem,
            irq,
            queues,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            interrupt_status: 0,
            notifications: vec![0; n],
            interrupts: 0,
            bad_accesses: 0,
        }
    }

    fn new_queue(max: u16) -> Queue {
        // A power of two up to 32768 is all `Queue::new` asks; device models pass constants.
        Queue::new(max).unwrap_or_else(|_| Queue::new(256).expect("256 is a valid queue size"))
    }

    /// The device behind the window.
    pub fn device(&self) -> &dyn VirtioDevice {
        self.device.as_ref()
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Features both sides agreed on.
    pub fn negotiated_features(&self) -> u64 {
        self.driver_features & self.device.features()
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Where queue `index` lives, as the driver set it up (`None` if there is no such
    /// queue or it is not ready).
    pub fn queue_layout(&self, index: usize) -> Option<QueueLayout> {
        let q = self.queues.get(index)?;
        q.ready().then(|| QueueLayout {
            size: q.size(),
            desc_table: Gpa(q.desc_table()),
            avail_ring: Gpa(q.avail_ring()),
            used_ring: Gpa(q.used_ring()),
            event_idx: q.event_idx_enabled(),
        })
    }

    /// Transport counters: notifications per queue, interrupts, refused accesses.
    pub fn counters(&self) -> (Vec<u64>, u64, u64) {
        (self.notifications.clone(), self.interrupts, self.bad_accesses)
    }

    /// A guest read of `data.len()` bytes at `offset` in the window.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            self.device.read_config(offset - reg::CONFIG, data);
            return;
        }
        let Some(value) = self.read_reg(offset, data.len()) else {
            self.bad_accesses += 1;
            data.fill(0);
            return;
        };
        data.copy_from_slice(&value.to_le_bytes()[..data.len()]);
    }

    fn read_reg(&self, offset: u64, len: usize) -> Option<u32> {
        if len != 4 {
            return None;
        }
        let q = self.queues.get(self.queue_sel as usize);
        Some(match offset {
            reg::MAGIC_VALUE => MAGIC_VALUE,
            reg::VERSION => MMIO_VERSION,
            reg::DEVICE_ID => self.device.device_type(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device.features() as u32,
                1 => (self.device.features() >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => q.map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => q.map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => 0,
            _ => return None,
        })
    }

    /// A guest write of `data` at `offset` in the window.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            if self.status & status::DRIVER == 0 || !self.device.write_config(offset - reg::CONFIG, data) {
                self.bad_accesses += 1;
            }
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            self.bad_accesses += 1;
            return;
        };
        let value = u32::from_le_bytes(bytes);
        if !self.write_reg(offset, value) {
            self.bad_accesses += 1;
        }
    }

    /// Applies a register write; false if the write was refused.
    fn write_reg(&mut self, offset: u64, v: u32) -> bool {
        // Queue set-up is only allowed between FEATURES_OK and DRIVER_OK (4.2.3.2).
        let setting_up = self.status & status::FEATURES_OK != 0 && self.status & status::DRIVER_OK == 0;
        let sel = self.queue_sel as usize;
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES => {
                if self.status & (status::FEATURES_OK | status::DRIVER) != status::DRIVER {
                    return false;
                }
                match self.driver_features_sel {
                    0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v),
                    1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32),
                    _ => return false,
                }
            }
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM | reg::QUEUE_READY if !setting_up => return false,
            reg::QUEUE_DESC_LOW..=reg::QUEUE_DEVICE_HIGH if !setting_up => return false,
            reg::QUEUE_NUM => match self.queues.get_mut(sel) {
                // A split queue's size is a power of two up to QueueNumMax (2.7); anything
                // else is refused here, not cut to 16 bits (0x1_0008 would become 8) or
                // left to virtio-queue to drop without a trace.
                Some(q) if v.is_power_of_two() && v <= u32::from(q.max_size()) => q.set_size(v as u16),
                _ => return false,
            },
            reg::QUEUE_READY => match self.queues.get_mut(sel) {
                Some(q) => q.set_ready(v == 1),
                None => return false,
            },
            reg::QUEUE_DESC_LOW => self.with_queue(|q| q.set_desc_table_address(Some(v), None)),
            reg::QUEUE_DESC_HIGH => self.with_queue(|q| q.set_desc_table_address(None, Some(v))),
            reg::QUEUE_DRIVER_LOW => self.with_queue(|q| q.set_avail_ring_address(Some(v), None)),
            reg::QUEUE_DRIVER_HIGH => self.with_queue(|q| q.set_avail_ring_address(None, Some(v))),
            reg::QUEUE_DEVICE_LOW => self.with_queue(|q| q.set_used_ring_address(Some(v), None)),
            reg::QUEUE_DEVICE_HIGH => self.with_queue(|q| q.set_used_ring_address(None, Some(v))),
            reg::QUEUE_NOTIFY => return self.notify(v as usize),
            reg::INTERRUPT_ACK => self.interrupt_status &= !v,
            reg::STATUS => self.set_status(v),
            _ => return false,
        }
        true
    }

    fn with_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        if let Some(q) = self.queues.get_mut(self.queue_sel as usize) {
            f(q);
        }
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let mut v = v;
        // FEATURES_OK only sticks if the driver accepted VERSION_1 and nothing the device
        // does not offer (3.1.1): the driver reads it back to learn that.
        if v & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            let offered = self.device.features();
            let version_1 = self.driver_features & (1 << VIRTIO_F_VERSION_1) != 0;
            if !version_1 || self.driver_features & !offered != 0 {
                v &= !status::FEATURES_OK;
            }
        }
        if v & status::DRIVER_OK != 0 && self.status & status::DRIVER_OK == 0 {
            for q in &mut self.queues {
                q.set_event_idx(false);
            }
            // Every ready queue must fit in guest memory; a driver that says otherwise gets
            // DEVICE_NEEDS_RESET.
            if self.queues.iter().any(|q| q.ready() && !q.is_valid(&self.mem)) {
                v |= status::DEVICE_NEEDS_RESET;
            }
        }
        // The driver may only set bits; it clears them only by writing 0.
        self.status |= v;
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.device.reset();
        self.status = 0;
        self.interrupt_status = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
    }

    /// `QueueNotify`: let the device consume queue `index`.
    fn notify(&mut self, index: usize) -> bool {
        let Some(queue) = self.queues.get_mut(index) else {
            return false;
        };
        self.notifications[index] += 1;
        if self.status & status::DRIVER_OK == 0
            || self.status & status::DEVICE_NEEDS_RESET != 0
            || !queue.ready()
        {
            return false;
        }
        let outcome: QueueOutcome = self.device.process_queue(index, queue, &self.mem);
        if outcome.broken {
            self.status |= status::DEVICE_NEEDS_RESET;
            tracing::warn!(
                "virtio-{}: queue {index} is broken; the device needs a reset",
                self.device.name()
            );
        }
        if outcome.used > 0 && outcome.notify {
            self.raise(VIRTIO_MMIO_INT_VRING);
        }
        true
    }

    fn raise(&mut self, bit: u32) {
        self.interrupt_status |= bit;
        self.interrupts += 1;
        if let Some(irq) = &self.irq {
            if let Err(e) = irq.write(1) {
                tracing::warn!("virtio-{}: cannot raise the interrupt: {e}", self.device.name());
            }
        }
    }
}

#[cfg(test)]
mod tests;
