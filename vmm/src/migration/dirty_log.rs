//! KVM's dirty-page log for the guest's RAM: `KVM_MEM_LOG_DIRTY_PAGES` set on every memory
//! slot (re-registering it with the same range and the flag), `KVM_GET_DIRTY_LOG` to fetch
//! and clear the bitmap of pages the guest wrote since the last fetch. Checked on the PVM
//! development host (vmm/DESIGN.md, `vmscope host`). Writes the VMM itself makes to guest
//! RAM (hypercall results) do not go through KVM and are not in the log.

use super::MigrationError;
use crate::vstate::memory::GuestMemory;
use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// Dirty logging on every slot of a VM for as long as it lives.
pub struct DirtyLog<'a> {
    vm: &'a VmFd,
    slots: Vec<kvm_userspace_memory_region>,
}

impl<'a> DirtyLog<'a> {
    /// Turns logging on for every region of `mem` (slot = region index, as `Vm::new` made them).
    pub fn start(vm: &'a VmFd, mem: &GuestMemory) -> Result<Self, MigrationError> {
        let mut slots = Vec::new();
        for (slot, region) in mem.iter().enumerate() {
            let host = region.get_host_address(vm_memory::MemoryRegionAddress(0)).map_err(|_| {
                MigrationError::DirtyLog {
                    op: "KVM_SET_USER_MEMORY_REGION",
                    source: kvm_ioctls::Error::new(libc::EFAULT),
                }
            })?;
            slots.push(kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            });
        }
        let log = Self { vm, slots };
        log.set_flags(KVM_MEM_LOG_DIRTY_PAGES)?;
        Ok(log)
    }

    fn set_flags(&self, flags: u32) -> Result<(), MigrationError> {
        for s in &self.slots {
            let desc = kvm_userspace_memory_region { flags, ..*s };
            // SAFETY: the same slot, guest range and host mapping `Vm::new` registered, taken
            // from the machine's live `GuestMemory` (its clones keep the mapping alive while
            // the VM can run); only the logging flag changes.
            unsafe { self.vm.set_user_memory_region(desc) }
                .map_err(|source| MigrationError::DirtyLog { op: "KVM_SET_USER_MEMORY_REGION", source })?;
        }
        Ok(())
    }

    /// The guest-physical page numbers written since the last call (or since `start`), in
    /// order; the log is cleared.
    pub fn fetch(&self) -> Result<Vec<u64>, MigrationError> {
        let mut pages = Vec::new();
        for s in &self.slots {
            let bitmap = self
                .vm
                .get_dirty_log(s.slot, s.memory_size as usize)
                .map_err(|source| MigrationError::DirtyLog { op: "KVM_GET_DIRTY_LOG", source })?;
            let first = s.guest_phys_addr / 4096;
            for (w, &word) in bitmap.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let b = bits.trailing_zeros() as u64;
                    pages.push(first + w as u64 * 64 + b);
                    bits &= bits - 1;
                }
            }
        }
        Ok(pages)
    }
}

impl Drop for DirtyLog<'_> {
    fn drop(&mut self) {
        let _ = self.set_flags(0);
    }
}
