use super::*;
use crate::devices::virtio::test_driver::*;
use crate::devices::virtio::VIRTIO_MMIO_INT_VRING;

/// A device that uses every chain it is given, with length 0.
struct Sink {
    reset: bool,
}

impl VirtioDevice for Sink {
    fn device_type(&self) -> u32 {
        42
    }
    fn name(&self) -> &str {
        "sink"
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[DRIVER_QUEUE_SIZE]
    }
    fn features(&self) -> u64 {
        1 << VIRTIO_F_VERSION_1
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(offset as u8);
    }
    fn write_config(&mut self, offset: u64, _: &[u8]) -> bool {
        offset == 0
    }
    fn process_queue(&mut self, _: usize, queue: &mut Queue, mem: &GuestMemory) -> QueueOutcome {
        let mut out = QueueOutcome::default();
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            queue.add_used(mem, chain.head_index(), 0).unwrap();
            out.used += 1;
        }
        out.notify = true;
        out
    }
    fn reset(&mut self) {
        self.reset = true;
    }
}

fn driver() -> Driver {
    Driver::new(Box::new(Sink { reset: false }))
}

#[test]
fn identifies_itself() {
    let mut d = driver();
    assert_eq!(d.read32(reg::MAGIC_VALUE), MAGIC_VALUE);
    assert_eq!(d.read32(reg::VERSION), 2);
    assert_eq!(d.read32(reg::DEVICE_ID), 42);
    assert_eq!(d.read32(reg::VENDOR_ID), VENDOR_ID);
    d.write32(reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(d.read32(reg::DEVICE_FEATURES), 1, "VERSION_1 is bit 32");
    d.write32(reg::QUEUE_SEL, 0);
    assert_eq!(d.read32(reg::QUEUE_NUM_MAX), u32::from(DRIVER_QUEUE_SIZE));
    d.write32(reg::QUEUE_SEL, 7);
    assert_eq!(d.read32(reg::QUEUE_NUM_MAX), 0, "no queue 7");
    let mut cfg = [0u8; 2];
    d.transport.read(reg::CONFIG + 5, &mut cfg);
    assert_eq!(cfg, [5, 5]);
}

#[test]
fn refuses_odd_accesses() {
    let mut d = driver();
    let mut b = [0xaau8; 2];
    d.transport.read(reg::MAGIC_VALUE, &mut b);
    assert_eq!(b, [0, 0], "registers are 32 bits wide");
    d.transport.write(reg::STATUS, &[1]);
    assert_eq!(d.read32(reg::STATUS), 0);
    d.write32(0xff0, 1);
    let (_, _, bad) = d.transport.counters();
    assert_eq!(bad, 3);
}

#[test]
fn features_ok_needs_version_1() {
    let mut d = driver();
    assert!(!d.negotiate(0), "a legacy driver is refused");
    assert!(!d.negotiate((1 << VIRTIO_F_VERSION_1) | (1 << 3)), "a feature not offered is refused");
    assert!(d.negotiate(1 << VIRTIO_F_VERSION_1));
    assert_eq!(d.transport.negotiated_features(), 1 << VIRTIO_F_VERSION_1);
}

#[test]
fn queue_setup_only_between_features_ok_and_driver_ok() {
    let mut d = driver();
    d.write32(reg::QUEUE_NUM, 8);
    d.write32(reg::QUEUE_READY, 1);
    assert_eq!(d.read32(reg::QUEUE_READY), 0);
    d.setup();
    assert!(d.transport.queue_layout(0).is_some());
    d.write32(reg::QUEUE_DESC_LOW, 0x5000);
    assert_eq!(d.transport.queue_layout(0).unwrap().desc_table, Gpa(DESC_TABLE), "ignored after DRIVER_OK");
}

#[test]
fn notify_uses_buffers_and_interrupts() {
    let mut d = driver();
    d.setup();
    let head = d.submit(&[(BUFFERS, 64, false)]);
    assert_eq!(d.used_idx(), 1);
    assert_eq!(d.used_elem(0), (u32::from(head), 0));
    assert_eq!(d.read32(reg::INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
    assert_eq!(d.irq.read().unwrap(), 1);
    d.write32(reg::INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    assert_eq!(d.read32(reg::INTERRUPT_STATUS), 0);
    let (notes, irqs, _) = d.transport.counters();
    assert_eq!((notes, irqs), (vec![1], 1));
}

#[test]
fn rings_outside_memory_need_a_reset() {
    let mut d = driver();
    assert!(d.negotiate(1 << VIRTIO_F_VERSION_1));
    d.setup_queue_at(0xffff_ffff_f000, AVAIL_RING, USED_RING);
    assert_ne!(d.read32(reg::STATUS) & status::DEVICE_NEEDS_RESET, 0);
    d.notify();
    assert_eq!(d.read32(reg::INTERRUPT_STATUS), 0, "a broken device does nothing");
}

#[test]
fn status_zero_resets() {
    let mut d = driver();
    d.setup();
    d.submit(&[(BUFFERS, 1, false)]);
    d.write32(reg::STATUS, 0);
    assert_eq!(d.read32(reg::STATUS), 0);
    assert_eq!(d.read32(reg::INTERRUPT_STATUS), 0);
    assert!(d.transport.queue_layout(0).is_none());
    d.notify();
    let (notes, irqs, _) = d.transport.counters();
    assert_eq!((notes, irqs), (vec![2], 1), "a notification before DRIVER_OK is ignored");
}

#[test]
fn queue_sizes_that_are_not_a_power_of_two_up_to_the_maximum_are_refused() {
    let mut d = driver();
    assert!(d.negotiate(1 << VIRTIO_F_VERSION_1));
    // 0x1_0008 once became 8 (the value was cut to 16 bits before it was checked).
    for bad in [0, 3, 100, u32::from(DRIVER_QUEUE_SIZE) * 2, 0x1_0000 + 8, u32::MAX] {
        d.write32(reg::QUEUE_NUM, bad);
    }
    let (_, _, refused) = d.transport.counters();
    assert_eq!(refused, 6);
    d.write32(reg::QUEUE_NUM, 8);
    d.write32(reg::QUEUE_READY, 1);
    assert_eq!(d.transport.queue_layout(0).unwrap().size, 8);
    let (_, _, refused) = d.transport.counters();
    assert_eq!(refused, 6, "a power of two up to the maximum is taken");
}

#[test]
fn configuration_writes_the_device_refuses_are_counted() {
    let mut d = driver();
    d.write32(reg::CONFIG, 1);
    assert_eq!(d.transport.counters().2, 1, "before DRIVER");
    d.write32(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    d.write32(reg::CONFIG, 1);
    assert_eq!(d.transport.counters().2, 1, "a field the device takes");
    d.write32(reg::CONFIG + 4, 1);
    assert_eq!(d.transport.counters().2, 2, "a read-only field");
}
