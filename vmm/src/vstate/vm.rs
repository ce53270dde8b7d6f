//! A KVM VM: its fd, its memory slots, the in-kernel irqchip and PIT, and vCPU creation.

use super::kvm::{KvmError, KvmSystem};
use super::memory::GuestMemory;
use crate::arch::x86_64::cpuid;
use kvm_bindings::{kvm_enable_cap, kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{VcpuFd, VmFd};
use std::sync::Arc;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// The three pages below 4 GiB that Intel's VMX needs for the real-mode TSS.
const TSS_ADDRESS: usize = 0xfffb_d000;

/// Errors from creating or configuring a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// KVM itself.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// A VM-level ioctl failed.
    #[error("{op} failed")]
    Ioctl {
        /// The ioctl.
        op: &'static str,
        /// KVM's errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A vCPU ioctl during set-up failed.
    #[error("{op} on vCPU {index} failed")]
    VcpuIoctl {
        /// Which vCPU.
        index: usize,
        /// The ioctl.
        op: &'static str,
        /// KVM's errno.
        #[source]
        source: kvm_ioctls::Error,
    },
}

fn ioctl(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Ioctl { op, source }
}

/// A created VM with its memory registered.
#[derive(Debug)]
pub struct Vm {
    /// Shared with the devices that issue VM ioctls later (the doorbell registers its
    /// ioeventfd on the first ring).
    fd: Arc<VmFd>,
    irqchip: bool,
    emulation_failure_exits: bool,
}

impl Vm {
    /// Creates a VM over `mem`; with `irqchip`, an in-kernel PIC/IOAPIC/LAPIC and a PIT.
    pub fn new(kvm: &KvmSystem, mem: &GuestMemory, irqchip: bool) -> Result<Self, VmError> {
        let fd = kvm.kvm().create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        fd.set_tss_address(TSS_ADDRESS).map_err(ioctl("KVM_SET_TSS_ADDR"))?;
        for (slot, region) in mem.iter().enumerate() {
            let host =
                region.get_host_address(vm_memory::MemoryRegionAddress(0)).map_err(|_| VmError::Ioctl {
                    op: "KVM_SET_USER_MEMORY_REGION",
                    source: kvm_ioctls::Error::new(libc::EFAULT),
                })?;
            let desc = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region is a live anonymous mapping owned by `mem`, whose clones
            // (held by the VM's devices and vCPUs) keep it mapped for as long as the VM
            // can run; the slot does not overlap another slot.
            unsafe { fd.set_user_memory_region(desc) }.map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        }
        if irqchip {
            fd.create_irq_chip().map_err(ioctl("KVM_CREATE_IRQCHIP"))?;
            let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
            fd.create_pit2(pit).map_err(ioctl("KVM_CREATE_PIT2"))?;
        }
        // Ask KVM to return the instruction bytes with an emulation failure.
        let cap = kvm_bindings::KVM_CAP_EXIT_ON_EMULATION_FAILURE;
        let emulation_failure_exits = fd.check_extension_raw(cap.into()) > 0
            && fd.enable_cap(&kvm_enable_cap { cap, args: [1, 0, 0, 0], ..Default::default() }).is_ok();
        Ok(Self { fd: Arc::new(fd), irqchip, emulation_failure_exits })
    }

    /// The VM fd.
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    /// The VM fd, for a device that keeps it (the VM is closed when the last holder drops it).
    pub fn shared_fd(&self) -> Arc<VmFd> {
        self.fd.clone()
    }

    /// Whether the VM has an in-kernel irqchip.
    pub fn has_irqchip(&self) -> bool {
        self.irqchip
    }

    /// Whether KVM returns instruction bytes with emulation failures.
    pub fn emulation_failure_exits(&self) -> bool {
        self.emulation_failure_exits
    }

    /// Creates vCPU `index` of `count` with normalized CPUID (on PVM without the paravirtual
    /// features a guest kernel would use through hypercall instructions).
    pub fn create_vcpu(&self, kvm: &KvmSystem, index: usize, count: usize) -> Result<VcpuFd, VmError> {
        let fd = self.fd.create_vcpu(index as u64).map_err(|source| VmError::VcpuIoctl {
            index,
            op: "KVM_CREATE_VCPU",
            source,
        })?;
        let mut cpuid = kvm.supported_cpuid()?;
        let hypercalls = crate::host::host_kind() != inspect::HostKind::Pvm;
        cpuid::normalize(&mut cpuid, index as u8, count as u8, hypercalls);
        fd.set_cpuid2(&cpuid).map_err(|source| VmError::VcpuIoctl { index, op: "KVM_SET_CPUID2", source })?;
        Ok(fd)
    }
}
