//! The state a vCPU starts in, written through its KVM file descriptor: Linux's boot MSRs,
//! the local APIC's LINT0/LINT1 wiring, and the registers at an entry point. The machine
//! calls these while it creates each vCPU (`machine::Machine::boot_elf`, `boot_linux`).

use super::msr;
use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_sregs, Msrs};
use kvm_ioctls::VcpuFd;

/// A vCPU ioctl that failed during set-up.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed")]
pub struct SetupError {
    /// The ioctl (`KVM_SET_MSRS`, …).
    pub op: &'static str,
    /// KVM's answer.
    #[source]
    pub source: kvm_ioctls::Error,
}

fn failed(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> SetupError {
    move |source| SetupError { op, source }
}

/// Writes [`msr::boot_msrs`] (what Firecracker gives a Linux boot vCPU).
pub fn set_boot_msrs(fd: &VcpuFd) -> Result<(), SetupError> {
    let entries: Vec<kvm_msr_entry> = msr::boot_msrs()
        .into_iter()
        .map(|(index, data)| kvm_msr_entry { index, data, ..Default::default() })
        .collect();
    let msrs = Msrs::from_entries(&entries)
        .map_err(|_| SetupError { op: "KVM_SET_MSRS", source: kvm_ioctls::Error::new(libc::E2BIG) })?;
    fd.set_msrs(&msrs).map_err(failed("KVM_SET_MSRS")).map(drop)
}

/// Wires the local APIC's interrupt pins as a PC does: LINT0 takes the 8259 PIC's output
/// (ExtINT), LINT1 takes NMI.
pub fn wire_local_interrupts(fd: &VcpuFd) -> Result<(), SetupError> {
    let mut lapic = fd.get_lapic().map_err(failed("KVM_GET_LAPIC"))?;
    let mut regs: Vec<u8> = lapic.regs.iter().map(|b| *b as u8).collect();
    msr::set_apic_delivery_mode(&mut regs, msr::APIC_LVT0, msr::APIC_MODE_EXTINT);
    msr::set_apic_delivery_mode(&mut regs, msr::APIC_LVT1, msr::APIC_MODE_NMI);
    for (d, s) in lapic.regs.iter_mut().zip(regs) {
        *d = s as _;
    }
    fd.set_lapic(&lapic).map_err(failed("KVM_SET_LAPIC"))
}

/// Puts the vCPU at an entry point: `regs`, then the special registers `sregs` derives from
/// KVM's reset ones, then a clean FPU. RFLAGS goes first because PVM filters RFLAGS.IOPL by
/// the CPL in force when it is written, which must still be the reset CPL0.
pub fn enter(
    fd: &VcpuFd,
    regs: &kvm_regs,
    sregs: impl FnOnce(kvm_sregs) -> kvm_sregs,
) -> Result<(), SetupError> {
    let base = fd.get_sregs().map_err(failed("KVM_GET_SREGS"))?;
    fd.set_regs(regs).map_err(failed("KVM_SET_REGS"))?;
    fd.set_sregs(&sregs(base)).map_err(failed("KVM_SET_SREGS"))?;
    fd.set_fpu(&super::regs::initial_fpu()).map_err(failed("KVM_SET_FPU"))
}
