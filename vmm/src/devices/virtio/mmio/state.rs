//! The transport's state for a snapshot: its registers, counters and each queue's
//! virtio-queue `QueueState`, and a transport rebuilt from them with every value from the
//! file checked as if the driver had written it.

use super::{status, MmioTransport, VirtioDevice};
use crate::vstate::memory::GuestMemory;
use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueState, QueueT};
use vmm_sys_util::eventfd::EventFd;

/// One queue: virtio-queue's `QueueState`, field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct QueueMeta {
    pub max_size: u16,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx_enabled: bool,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
}

impl From<QueueState> for QueueMeta {
    fn from(q: QueueState) -> Self {
        Self {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx_enabled,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

impl From<QueueMeta> for QueueState {
    fn from(q: QueueMeta) -> Self {
        Self {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx_enabled,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

/// The registers of section 4.2.2 the driver wrote, the queues and the counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct MmioTransportState {
    pub queue_sel: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub driver_features: u64,
    pub status: u32,
    pub interrupt_status: u32,
    pub queues: Vec<QueueMeta>,
    pub notifications: Vec<u64>,
    pub interrupts: u64,
    pub bad_accesses: u64,
}

impl MmioTransport {
    /// The transport's state (the device's own state is the device's business).
    pub fn state(&self) -> MmioTransportState {
        MmioTransportState {
            queue_sel: self.queue_sel,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            status: self.status,
            interrupt_status: self.interrupt_status,
            queues: self.queues.iter().map(|q| q.state().into()).collect(),
            notifications: self.notifications.clone(),
            interrupts: self.interrupts,
            bad_accesses: self.bad_accesses,
        }
    }

    /// A transport for `device` in `state`. The state comes from a file, so it is checked
    /// as the registers would be: as many queues as the device has, each with the device's
    /// maximum size and a power-of-two size up to it, features the device offers, and —
    /// once the driver is running — rings that lie in guest memory.
    pub fn from_state(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemory,
        irq: Option<EventFd>,
        state: &MmioTransportState,
    ) -> Result<Self, String> {
        let mut t = Self::new(device, mem, irq);
        t.restore(state)?;
        Ok(t)
    }

    /// Puts the transport back in `state` (a checkpoint's rewind; [`Self::from_state`]),
    /// checked the same way; on an error nothing changes. The device and its interrupt
    /// line stay.
    pub fn restore(&mut self, state: &MmioTransportState) -> Result<(), String> {
        let (device, mem) = (&self.device, &self.mem);
        let maxes = device.queue_max_sizes().to_vec();
        if state.queues.len() != maxes.len() || state.notifications.len() != maxes.len() {
            return Err(format!(
                "{} queues and {} notification counters saved, the device has {} queues",
                state.queues.len(),
                state.notifications.len(),
                maxes.len()
            ));
        }
        if state.driver_features & !device.features() != 0 {
            return Err(format!(
                "driver features {:#x} include ones the device does not offer ({:#x})",
                state.driver_features,
                device.features()
            ));
        }
        let mut queues = Vec::with_capacity(maxes.len());
        for (i, (q, max)) in state.queues.iter().zip(maxes).enumerate() {
            if q.max_size != max {
                return Err(format!("queue {i} has maximum size {}, the device's is {max}", q.max_size));
            }
            let queue = Queue::try_from(QueueState::from(*q)).map_err(|e| format!("queue {i}: {e}"))?;
            let running =
                state.status & status::DRIVER_OK != 0 && state.status & status::DEVICE_NEEDS_RESET == 0;
            if running && queue.ready() && !queue.is_valid(mem) {
                return Err(format!("queue {i}'s rings do not lie in guest memory"));
            }
            queues.push(queue);
        }
        let t = self;
        t.queues = queues;
        t.queue_sel = state.queue_sel;
        t.device_features_sel = state.device_features_sel;
        t.driver_features_sel = state.driver_features_sel;
        t.driver_features = state.driver_features;
        t.status = state.status;
        t.interrupt_status = state.interrupt_status;
        t.notifications = state.notifications.clone();
        t.interrupts = state.interrupts;
        t.bad_accesses = state.bad_accesses;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::Block;
    use crate::vstate::memory::create_guest_memory;
    use std::io::Write;

    fn transport(img: &std::path::Path, mem: &GuestMemory) -> MmioTransport {
        MmioTransport::new(Box::new(Block::open(img, true).unwrap()), mem.clone(), None)
    }

    #[test]
    fn state_round_trips_and_bad_state_is_refused() {
        let mut img = tempfile::NamedTempFile::new().unwrap();
        img.write_all(&[0; 4096]).unwrap();
        let mem = create_guest_memory(4 << 20).unwrap();
        let mut t = transport(img.path(), &mem);
        t.queues[0].set_size(16);
        t.queues[0].set_next_avail(5);
        t.queues[0].set_next_used(5);
        t.driver_features = 1 << crate::devices::virtio::VIRTIO_F_VERSION_1;
        t.status = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        t.notifications[0] = 7;
        let s = t.state();
        let json = serde_json::to_string(&s).unwrap();
        let back: MmioTransportState = serde_json::from_str(&json).unwrap();
        let r = MmioTransport::from_state(
            Box::new(Block::open(img.path(), true).unwrap()),
            mem.clone(),
            None,
            &back,
        )
        .unwrap();
        assert_eq!(r.state(), s);
        assert_eq!(r.queues[0].next_avail(), 5);

        let refuse = |f: &dyn Fn(&mut MmioTransportState), want: &str| {
            let mut bad = s.clone();
            f(&mut bad);
            let dev = Box::new(Block::open(img.path(), true).unwrap());
            let e = MmioTransport::from_state(dev, mem.clone(), None, &bad).err().unwrap();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        };
        refuse(&|b| b.queues.clear(), "0 queues");
        refuse(&|b| b.queues[0].max_size = 1024, "maximum size 1024");
        refuse(&|b| b.queues[0].size = 3, "queue 0");
        refuse(&|b| b.driver_features = 1 << 40, "does not offer");
        refuse(
            &|b| {
                b.status |= status::DRIVER_OK;
                b.queues[0].ready = true;
                b.queues[0].desc_table = 1 << 40;
            },
            "do not lie in guest memory",
        );
    }
}
