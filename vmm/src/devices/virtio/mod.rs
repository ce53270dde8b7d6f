//! Virtio devices (virtio 1.2) on the MMIO transport: [`mmio::MmioTransport`] holds the
//! registers of section 4.2.2 and the queues (virtio-queue's split `Queue`); a device model
//! ([`VirtioDevice`], e.g. [`block::Block`]) only sees its queues when the driver notifies.
//!
//! Queues are processed on the vCPU thread that wrote `QueueNotify`: a teaching VMM wants
//! every step of a request on one thread that a debugger can follow. The driver is
//! hostile: everything it writes (ring addresses, descriptor chains, request headers) is
//! checked, and a broken queue marks the device `DEVICE_NEEDS_RESET` instead of stopping
//! the VMM.

pub mod block;
pub mod mmio;
#[cfg(any(test, feature = "fuzzing"))]
pub mod test_driver;

use crate::vstate::memory::GuestMemory;
use virtio_queue::Queue;

pub use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
pub use virtio_bindings::virtio_ids::{VIRTIO_ID_BLOCK, VIRTIO_ID_CONSOLE, VIRTIO_ID_NET};
pub use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};

/// Device status bits (virtio 1.2, 2.1), under the spec's short names.
pub mod status {
    use virtio_bindings::virtio_config as config;

    /// The guest has noticed the device.
    pub const ACKNOWLEDGE: u32 = config::VIRTIO_CONFIG_S_ACKNOWLEDGE;
    /// The guest knows how to drive the device.
    pub const DRIVER: u32 = config::VIRTIO_CONFIG_S_DRIVER;
    /// The driver is set up and ready to drive the device.
    pub const DRIVER_OK: u32 = config::VIRTIO_CONFIG_S_DRIVER_OK;
    /// The driver has acknowledged the features it understands.
    pub const FEATURES_OK: u32 = config::VIRTIO_CONFIG_S_FEATURES_OK;
    /// The device has hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = config::VIRTIO_CONFIG_S_NEEDS_RESET;
    /// The guest gave up on the device.
    pub const FAILED: u32 = config::VIRTIO_CONFIG_S_FAILED;
}

/// What a device did with a notification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueOutcome {
    /// Chains the device consumed.
    pub used: u32,
    /// The driver wants an interrupt for them.
    pub notify: bool,
    /// The queue is unusable (bad addresses or chains); the device needs a reset.
    pub broken: bool,
}

/// A virtio device model behind a transport.
pub trait VirtioDevice: Send {
    /// The virtio device ID.
    fn device_type(&self) -> u32;
    /// Short name for messages and the `vq` command ("blk").
    fn name(&self) -> &str;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// The device's feature bits (including VIRTIO_F_VERSION_1).
    fn features(&self) -> u64;
    /// Reads the device-specific configuration space at `offset` into `data`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// A driver write to the configuration space; false if the device refused it (a
    /// read-only field), which the transport counts as a refused access.
    fn write_config(&mut self, offset: u64, data: &[u8]) -> bool;
    /// The driver notified queue `index`: consume what it made available.
    fn process_queue(&mut self, index: usize, queue: &mut Queue, mem: &GuestMemory) -> QueueOutcome;
    /// The driver reset the device.
    fn reset(&mut self) {}
    /// The image behind a disk device, as a snapshot records it (`None`: not a disk).
    fn disk_identity(&self) -> Option<std::io::Result<block::DiskIdentity>> {
        None
    }
    /// Counters for `vq` and the TUI: name and value.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![]
    }
}
