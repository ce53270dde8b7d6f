//! The `devices` section: every device's state read from a held machine, and the port and
//! MMIO buses rebuilt from it — COM1 (vm-superio's `SerialState`, with its interrupt on
//! IRQ 4 when the VM has an irqchip), the doorbell, and each virtio-mmio device (transport
//! registers, virtio-queue's `QueueState` per queue, and for a disk the image's identity,
//! which must still match). The i8042, the exit port and the hypercall ports keep no state.
//!
//! [`capture_devices`] and [`restore_devices`] are what a snapshot file and a migration
//! stream share.

use super::meta::{DevicesMeta, SerialMeta, VirtioMeta};
use super::SnapshotError;
use crate::devices::console::Console;
use crate::devices::doorbell::{Doorbell, RingConsumerMode, SharedRing};
use crate::devices::hypercall::Hypercalls;
use crate::devices::legacy::serial::{SerialPort, COM1_IRQ};
use crate::devices::virtio::block::{Block, DiskIdentity};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::{MmioBus, PortIoBus};
use crate::machine::Machine;
use crate::vstate::memory::GuestMemory;
use crate::vstate::vm::Vm;
use std::sync::{Arc, Mutex, PoisonError};
use vmm_sys_util::eventfd::EventFd;

/// The devices of `machine`, whose vCPUs the caller holds (no register access is in
/// flight). A disk whose image cannot be looked at is an error: a snapshot that could not
/// tell a changed disk later must not be written.
pub fn capture_devices(machine: &Machine) -> Result<DevicesMeta, SnapshotError> {
    let bus = machine.bus();
    let (serial_state, bytes_out) = bus.serial().lock().unwrap_or_else(PoisonError::into_inner).state();
    let mut virtio = Vec::new();
    for (base, irq, transport) in bus.mmio().transports() {
        let t = transport.lock().unwrap_or_else(PoisonError::into_inner);
        let disk = match t.device().disk_identity() {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                return Err(SnapshotError::Device {
                    device: "virtio-blk",
                    detail: format!("cannot read the metadata of its image: {e}"),
                })
            }
        };
        virtio.push(VirtioMeta {
            name: t.device().name().to_string(),
            device_id: t.device().device_type(),
            base,
            irq,
            transport: t.state(),
            disk,
        });
    }
    Ok(DevicesMeta {
        serial: SerialMeta::from_state(&serial_state, bytes_out),
        doorbell: machine.ring_consumer().map(|m| m.name().to_string()),
        stateless: vec!["i8042 (reset only)".into(), "exit port".into(), "hypercall ports".into()],
        virtio,
    })
}

/// Checks every disk of `devices` against the file at its path now (exists, same file,
/// same size, not modified since): run before anything is built, so a changed disk is
/// refused with the reason and nothing runs.
pub fn check_disks(devices: &DevicesMeta) -> Result<(), SnapshotError> {
    for d in devices.virtio.iter().filter_map(|v| v.disk.as_ref()) {
        let now = stat(&d.path).map_err(|detail| disk_error(d, detail))?;
        if let Some(detail) = d.difference(&now) {
            return Err(disk_error(d, detail));
        }
    }
    Ok(())
}

fn disk_error(d: &DiskIdentity, detail: String) -> SnapshotError {
    SnapshotError::DiskChanged { path: d.path.clone(), detail }
}

/// The identity of the file at `path` as it is now.
fn stat(path: &std::path::Path) -> Result<DiskIdentity, String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| format!("it cannot be found: {e}"))?;
    Ok(DiskIdentity {
        path: path.to_path_buf(),
        read_only: false,
        size: m.len(),
        dev: m.dev(),
        ino: m.ino(),
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s += &format!(": {c}");
        cause = c.source();
    }
    s
}

/// An eventfd bound to interrupt line `gsi` of `vm`'s in-kernel irqchip.
fn irqfd(vm: &Vm, gsi: u32) -> Result<EventFd, SnapshotError> {
    let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| SnapshotError::VmIoctl {
        op: "eventfd",
        source: kvm_ioctls::Error::new(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    vm.fd().register_irqfd(&fd, gsi).map_err(|source| SnapshotError::VmIoctl { op: "KVM_IRQFD", source })?;
    Ok(fd)
}

/// The port bus (COM1, hypercalls, the MMIO devices) and the doorbell rebuilt from
/// `devices` over `mem`; interrupts go to `vm`'s irqchip if it has one. Disks are opened
/// (and locked) as they were attached and must still be the images the snapshot saw.
pub fn restore_devices(
    vm: &Vm,
    mem: &GuestMemory,
    devices: &DevicesMeta,
    console: Console,
) -> Result<(PortIoBus, Option<Doorbell>), SnapshotError> {
    let irq = |line| vm.has_irqchip().then(|| irqfd(vm, line)).transpose();
    let serial = SerialPort::from_state(
        console.clone(),
        irq(COM1_IRQ)?,
        &devices.serial.to_state(),
        devices.serial.bytes_out,
    )
    .map_err(|detail| SnapshotError::Device { device: "COM1", detail })?;
    let mut mmio = MmioBus::default();
    for (i, v) in devices.virtio.iter().enumerate() {
        let bad = |detail: String| SnapshotError::Device {
            device: "virtio-mmio",
            detail: format!("device {i}: {detail}"),
        };
        let Some(disk) = &v.disk else {
            return Err(bad(format!(
                "virtio-{} (id {}) without a disk: vmscope has no such device",
                v.name, v.device_id
            )));
        };
        let block = Block::open(&disk.path, disk.read_only).map_err(|e| disk_error(disk, chain(&e)))?;
        let now = block.identity().map_err(|e| disk_error(disk, e.to_string()))?;
        if let Some(detail) = disk.difference(&now) {
            return Err(disk_error(disk, detail));
        }
        let (base, line) = mmio.next_slot().map_err(|e| bad(e.to_string()))?;
        if (base, line) != (v.base, v.irq) {
            return Err(bad(format!(
                "saved at {:#x} irq {}, but its slot is {base:#x} irq {line}",
                v.base, v.irq
            )));
        }
        let transport =
            MmioTransport::from_state(Box::new(block), mem.clone(), irq(line)?, &v.transport).map_err(bad)?;
        mmio.add(transport).map_err(|e| bad(e.to_string()))?;
    }
    let bus = PortIoBus::new(Arc::new(Mutex::new(serial)), Hypercalls::new(mem.clone(), console.clone()))
        .with_mmio(mmio);
    let doorbell = match devices.doorbell.as_deref() {
        None => None,
        Some(mode) => {
            let mode = match mode {
                "sleep" => RingConsumerMode::Sleep,
                "poll" => RingConsumerMode::Poll,
                other => {
                    return Err(SnapshotError::BadSection {
                        section: "devices".into(),
                        detail: format!("unknown ring consumer {other:?}"),
                    })
                }
            };
            let ring = SharedRing { memory: mem.clone(), console, mode };
            Doorbell::new(vm.shared_fd(), vmscope_abi::PORT_DOORBELL, Some(ring)).ok()
        }
    };
    let bus = match &doorbell {
        Some(d) => bus.with_doorbell(d.port_handle()),
        None => bus,
    };
    Ok((bus, doorbell))
}
