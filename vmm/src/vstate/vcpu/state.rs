//! The whole architectural state of one vCPU as KVM exposes it, read and written through
//! its fd: what a snapshot, a checkpoint or a migration carries. Reads happen on the vCPU's
//! own thread (a [`super::VcpuRequest::SaveState`]); writes happen before the thread starts.
//!
//! Every part the host refuses to read is named in [`VcpuState::refused`] instead of being
//! skipped silently; the general and special registers are required.

use kvm_bindings::{
    kvm_debugregs, kvm_fpu, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs,
    kvm_vcpu_events, kvm_xcrs, kvm_xsave, CpuId, Msrs, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::VcpuFd;
use std::sync::Arc;

/// How many MSRs go into one KVM_GET_MSRS / KVM_SET_MSRS call (KVM's own cap on `nmsrs`
/// is `KVM_MAX_MSR_ENTRIES` = 256).
const MSR_CHUNK: usize = 255;

/// What to read besides the registers.
#[derive(Clone, Debug)]
pub struct SaveRequest {
    /// The MSRs to read (KVM_GET_MSR_INDEX_LIST of the host, read when the VM was made).
    pub msrs: Arc<[u32]>,
    /// Whether the VM has an in-kernel irqchip, so the vCPU has a local APIC to read.
    pub lapic: bool,
}

/// One vCPU's state. `None` parts were refused by the host (see `refused`) or do not exist
/// (no local APIC without an in-kernel irqchip).
#[derive(Default)]
pub struct VcpuState {
    /// General registers (KVM_GET_REGS).
    pub regs: kvm_regs,
    /// Segment, control and descriptor-table registers (KVM_GET_SREGS).
    pub sregs: kvm_sregs,
    /// x87/SSE state (KVM_GET_FPU).
    pub fpu: Option<kvm_fpu>,
    /// The XSAVE area (KVM_GET_XSAVE, the 4 KiB legacy form).
    pub xsave: Option<Box<kvm_xsave>>,
    /// XCR0 and friends (KVM_GET_XCRS).
    pub xcrs: Option<kvm_xcrs>,
    /// DR0-DR3, DR6, DR7 (KVM_GET_DEBUGREGS).
    pub debugregs: Option<kvm_debugregs>,
    /// The local APIC's registers (KVM_GET_LAPIC).
    pub lapic: Option<Box<kvm_lapic_state>>,
    /// Running, halted, waiting for SIPI (KVM_GET_MP_STATE).
    pub mp_state: Option<kvm_mp_state>,
    /// Pending exceptions, interrupts, NMIs and the interrupt shadow (KVM_GET_VCPU_EVENTS).
    pub events: Option<kvm_vcpu_events>,
    /// MSR values, in the order of the index list (KVM_GET_MSRS).
    pub msrs: Vec<(u32, u64)>,
    /// The CPUID the vCPU was given (KVM_GET_CPUID2): a restore refuses a host that would
    /// show the guest something else.
    pub cpuid: Vec<kvm_bindings::kvm_cpuid_entry2>,
    /// What the host refused to read, one line each ("KVM_GET_XSAVE: errno 22", "MSR
    /// 0x48: not readable").
    pub refused: Vec<String>,
}

impl std::fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuState")
            .field("rip", &self.regs.rip)
            .field("msrs", &self.msrs.len())
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

/// A KVM ioctl that failed while reading or writing the state.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed")]
pub struct StateIoctlError {
    /// The ioctl.
    pub op: &'static str,
    /// KVM's errno.
    #[source]
    pub source: kvm_ioctls::Error,
}

fn err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> StateIoctlError {
    move |source| StateIoctlError { op, source }
}

/// Reads everything `req` asks for. Registers are required; the other parts are recorded as
/// refused when the host will not give them.
pub fn save(fd: &VcpuFd, req: &SaveRequest) -> Result<VcpuState, StateIoctlError> {
    let mut s = VcpuState {
        regs: fd.get_regs().map_err(err("KVM_GET_REGS"))?,
        sregs: fd.get_sregs().map_err(err("KVM_GET_SREGS"))?,
        ..Default::default()
    };
    let mut refused = Vec::new();
    fn keep<T>(r: Result<T, kvm_ioctls::Error>, op: &str, refused: &mut Vec<String>) -> Option<T> {
        r.map_err(|e| refused.push(format!("{op}: {e}"))).ok()
    }
    s.fpu = keep(fd.get_fpu(), "KVM_GET_FPU", &mut refused);
    s.xsave = keep(fd.get_xsave(), "KVM_GET_XSAVE", &mut refused).map(Box::new);
    s.xcrs = keep(fd.get_xcrs(), "KVM_GET_XCRS", &mut refused);
    s.debugregs = keep(fd.get_debug_regs(), "KVM_GET_DEBUGREGS", &mut refused);
    if req.lapic {
        s.lapic = keep(fd.get_lapic(), "KVM_GET_LAPIC", &mut refused).map(Box::new);
    }
    s.mp_state = keep(fd.get_mp_state(), "KVM_GET_MP_STATE", &mut refused);
    s.events = keep(fd.get_vcpu_events(), "KVM_GET_VCPU_EVENTS", &mut refused);
    s.cpuid = keep(fd.get_cpuid2(KVM_MAX_CPUID_ENTRIES), "KVM_GET_CPUID2", &mut refused)
        .map(|c| c.as_slice().to_vec())
        .unwrap_or_default();
    s.msrs = read_msrs(fd, &req.msrs, &mut refused)?;
    s.refused = refused;
    Ok(s)
}

/// KVM_GET_MSRS over `indices`. KVM stops at the first MSR it cannot read and returns how
/// many it did; that one is recorded as refused and the read goes on after it.
fn read_msrs(
    fd: &VcpuFd,
    indices: &[u32],
    refused: &mut Vec<String>,
) -> Result<Vec<(u32, u64)>, StateIoctlError> {
    let mut out = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(MSR_CHUNK)];
        let entries: Vec<kvm_msr_entry> =
            chunk.iter().map(|&index| kvm_msr_entry { index, ..Default::default() }).collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| StateIoctlError {
            op: "KVM_GET_MSRS",
            source: kvm_ioctls::Error::new(libc::E2BIG),
        })?;
        let n = fd.get_msrs(&mut msrs).map_err(err("KVM_GET_MSRS"))?;
        out.extend(msrs.as_slice()[..n].iter().map(|e| (e.index, e.data)));
        if n < chunk.len() {
            refused.push(format!("MSR {:#x}: not readable", chunk[n]));
            rest = &rest[n + 1..];
        } else {
            rest = &rest[chunk.len()..];
        }
    }
    Ok(out)
}

/// Writes `s` to a vCPU that has not run yet, in the order KVM needs: MP state and
/// registers first, the FPU/XSAVE state, debug registers, the local APIC, MSRs (after the
/// APIC, whose base they hold) and last the pending events. Returns the MSRs KVM would not
/// take (named, not silently dropped).
pub fn restore(fd: &VcpuFd, s: &VcpuState) -> Result<Vec<String>, StateIoctlError> {
    if let Some(mp) = &s.mp_state {
        fd.set_mp_state(*mp).map_err(err("KVM_SET_MP_STATE"))?;
    }
    fd.set_regs(&s.regs).map_err(err("KVM_SET_REGS"))?;
    fd.set_sregs(&s.sregs).map_err(err("KVM_SET_SREGS"))?;
    if let Some(fpu) = &s.fpu {
        fd.set_fpu(fpu).map_err(err("KVM_SET_FPU"))?;
    }
    if let Some(xsave) = &s.xsave {
        // SAFETY: `xsave` is a whole 4 KiB `kvm_xsave` read back from KVM_GET_XSAVE; vmscope
        // never asks for AMX state (ARCH_REQ_XCOMP_GUEST_PERM), so KVM's XSAVE size stays
        // 4 KiB and KVM_SET_XSAVE reads no byte past the struct.
        unsafe { fd.set_xsave(xsave) }.map_err(err("KVM_SET_XSAVE"))?;
    }
    if let Some(xcrs) = &s.xcrs {
        fd.set_xcrs(xcrs).map_err(err("KVM_SET_XCRS"))?;
    }
    if let Some(d) = &s.debugregs {
        fd.set_debug_regs(d).map_err(err("KVM_SET_DEBUGREGS"))?;
    }
    if let Some(lapic) = &s.lapic {
        fd.set_lapic(lapic).map_err(err("KVM_SET_LAPIC"))?;
    }
    let not_taken = write_msrs(fd, &s.msrs)?;
    if let Some(events) = &s.events {
        fd.set_vcpu_events(events).map_err(err("KVM_SET_VCPU_EVENTS"))?;
    }
    Ok(not_taken)
}

/// KVM_SET_MSRS; like the read, an MSR KVM refuses is named and skipped.
fn write_msrs(fd: &VcpuFd, values: &[(u32, u64)]) -> Result<Vec<String>, StateIoctlError> {
    let mut refused = Vec::new();
    let mut rest = values;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(MSR_CHUNK)];
        let entries: Vec<kvm_msr_entry> =
            chunk.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
        let msrs = Msrs::from_entries(&entries).map_err(|_| StateIoctlError {
            op: "KVM_SET_MSRS",
            source: kvm_ioctls::Error::new(libc::E2BIG),
        })?;
        let n = fd.set_msrs(&msrs).map_err(err("KVM_SET_MSRS"))?;
        if n < chunk.len() {
            refused.push(format!("MSR {:#x} = {:#x}: not accepted", chunk[n].0, chunk[n].1));
            rest = &rest[n + 1..];
        } else {
            rest = &rest[chunk.len()..];
        }
    }
    Ok(refused)
}

/// The CPUID this host gives a vCPU (after normalization), for comparing with a snapshot's.
pub fn cpuid_of(fd: &VcpuFd) -> Result<Vec<kvm_bindings::kvm_cpuid_entry2>, StateIoctlError> {
    let c: CpuId = fd.get_cpuid2(KVM_MAX_CPUID_ENTRIES).map_err(err("KVM_GET_CPUID2"))?;
    Ok(c.as_slice().to_vec())
}
