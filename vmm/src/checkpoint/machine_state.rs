//! Everything of a checkpoint but RAM, read from and written back into the same live
//! machine, with the snapshot module's pieces: every vCPU's whole state (read and written
//! on its own thread), the VM's kvmclock and, for Linux, its PICs, IOAPIC and PIT
//! (`snapshot::vm`), and the devices — COM1's registers and FIFO and each virtio-mmio
//! transport with its queues (`snapshot::devices::capture_devices`), put back in place.

use super::CheckpointError;
use crate::machine::Machine;
use crate::snapshot::meta::DevicesMeta;
use crate::snapshot::{devices, vm};
use crate::vstate::vcpu::state::{SaveRequest, VcpuState};
use crate::vstate::vcpu::VcpuRequest;
use std::sync::{Arc, PoisonError};

/// A held machine's state except RAM.
pub struct MachineState {
    /// Each vCPU's state, shared with the requests that write it back.
    pub vcpus: Vec<Arc<VcpuState>>,
    /// kvmclock and, with an irqchip, the PICs, IOAPIC and PIT.
    pub vm: vm::VmState,
    /// COM1 and the virtio-mmio transports.
    pub devices: DevicesMeta,
    /// Its size in bytes, roughly (the vCPUs' saved structures dominate).
    pub bytes: u64,
}

impl MachineState {
    /// The RIP of each vCPU.
    pub fn rips(&self) -> Vec<u64> {
        self.vcpus.iter().map(|s| s.regs.rip).collect()
    }
}

/// Reads the state of `machine`, whose vCPUs the caller holds.
pub fn capture(machine: &Machine) -> Result<MachineState, CheckpointError> {
    let req = SaveRequest { msrs: machine.msr_indices().clone(), lapic: machine.vm().has_irqchip() };
    let mut vcpus = Vec::with_capacity(machine.vcpu_count());
    for i in 0..machine.vcpu_count() {
        let r = req.clone();
        vcpus.push(Arc::new(machine.vcpu(i)?.ask(|tx| VcpuRequest::SaveState(r, tx))??));
    }
    let mut refused = Vec::new();
    let vm = vm::capture(machine.vm(), &mut refused);
    let devices = devices::capture_devices(machine)?;
    let bytes = vcpus.iter().map(|s| crate::snapshot::vcpu::encode(s).len() as u64).sum::<u64>()
        + vm::encode(&vm).len() as u64
        + serde_json::to_vec(&devices).map_or(0, |v| v.len() as u64);
    Ok(MachineState { vcpus, vm, devices, bytes })
}

/// Writes `state` back into `machine`, whose vCPUs the caller holds: devices, then the VM
/// (PIT, interrupt controllers, clock), then every vCPU (its local APIC after the IOAPIC).
/// Returns notes: what the host would not take back.
pub fn restore(machine: &Machine, state: &MachineState) -> Result<Vec<String>, CheckpointError> {
    let mut notes = Vec::new();
    restore_devices(machine, &state.devices)?;
    vm::restore(machine.vm(), &state.vm, &mut notes)?;
    for (i, s) in state.vcpus.iter().enumerate() {
        let s = s.clone();
        let not_taken = machine.vcpu(i)?.ask(|tx| VcpuRequest::RestoreState(s, tx))??;
        notes.extend(not_taken.into_iter().map(|m| format!("vCPU {i}: {m}")));
    }
    Ok(notes)
}

/// COM1 and each virtio-mmio transport back in their checkpointed state; the disks behind
/// them are not touched (their images are not rewound).
fn restore_devices(machine: &Machine, saved: &DevicesMeta) -> Result<(), CheckpointError> {
    let bus = machine.bus();
    bus.serial()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .restore(&saved.serial.to_state(), saved.serial.bytes_out)
        .map_err(|detail| CheckpointError::Device { device: "COM1".into(), detail })?;
    let transports = bus.mmio().transports();
    if transports.len() != saved.virtio.len() {
        return Err(CheckpointError::Device {
            device: "virtio-mmio".into(),
            detail: format!("{} devices now, {} at the checkpoint", transports.len(), saved.virtio.len()),
        });
    }
    for (i, ((base, _, transport), v)) in transports.iter().zip(&saved.virtio).enumerate() {
        let device = format!("virtio-mmio device {i} at {base:#x}");
        if *base != v.base {
            return Err(CheckpointError::Device { device, detail: format!("it was at {:#x}", v.base) });
        }
        transport
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .restore(&v.transport)
            .map_err(|detail| CheckpointError::Device { device, detail })?;
    }
    Ok(())
}
