//! What this host's KVM lets a snapshot (and a migration) read and write back: every state
//! ioctl tried on a scratch VM with an in-kernel irqchip, PIT and one vCPU, and dirty-page
//! logging on a scratch memory slot. `vmscope host` prints the result, so a refusal is
//! named rather than discovered halfway through a restore.

use crate::vstate::kvm::KvmSystem;
use crate::vstate::memory::create_guest_memory;
use crate::vstate::vm::Vm;
use kvm_bindings::{
    kvm_irqchip, kvm_userspace_memory_region, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_MEM_LOG_DIRTY_PAGES,
};
use serde::Serialize;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// One state ioctl (or pair) and how the host answered.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeResult {
    /// What was tried ("KVM_GET/SET_XSAVE").
    pub what: String,
    /// Whether it worked.
    pub ok: bool,
    /// KVM's error, or a note ("40 of 42 MSRs readable").
    pub detail: String,
}

fn result(what: &str, r: Result<String, String>) -> ProbeResult {
    match r {
        Ok(detail) => ProbeResult { what: what.into(), ok: true, detail },
        Err(detail) => ProbeResult { what: what.into(), ok: false, detail },
    }
}

fn pair<T>(
    get: Result<T, kvm_ioctls::Error>,
    set: impl FnOnce(&T) -> Result<(), kvm_ioctls::Error>,
) -> Result<String, String> {
    let v = get.map_err(|e| format!("get: {e}"))?;
    set(&v).map_err(|e| format!("set: {e}"))?;
    Ok(String::new())
}

/// Tries every state ioctl vmscope's snapshots use. `Err` only when no scratch VM could be
/// made at all.
pub fn probe(kvm: &KvmSystem) -> Result<Vec<ProbeResult>, String> {
    let mem = create_guest_memory(4 << 20).map_err(|e| e.to_string())?;
    let vm = Vm::new(kvm, &mem, true).map_err(|e| e.to_string())?;
    let fd = vm.create_vcpu(kvm, 0, 1).map_err(|e| e.to_string())?;
    let mut out = vec![
        result("KVM_GET/SET_REGS", pair(fd.get_regs(), |v| fd.set_regs(v))),
        result("KVM_GET/SET_SREGS", pair(fd.get_sregs(), |v| fd.set_sregs(v))),
        result("KVM_GET/SET_FPU", pair(fd.get_fpu(), |v| fd.set_fpu(v))),
        result(
            "KVM_GET/SET_XSAVE",
            // SAFETY: the struct comes from KVM_GET_XSAVE on the same vCPU, and vmscope never
            // enables AMX state, so KVM reads exactly the 4 KiB struct.
            pair(fd.get_xsave(), |v| unsafe { fd.set_xsave(v) }),
        ),
        result("KVM_GET/SET_XCRS", pair(fd.get_xcrs(), |v| fd.set_xcrs(v))),
        result("KVM_GET/SET_DEBUGREGS", pair(fd.get_debug_regs(), |v| fd.set_debug_regs(v))),
        result("KVM_GET/SET_LAPIC", pair(fd.get_lapic(), |v| fd.set_lapic(v))),
        result("KVM_GET/SET_MP_STATE", pair(fd.get_mp_state(), |v| fd.set_mp_state(*v))),
        result("KVM_GET/SET_VCPU_EVENTS", pair(fd.get_vcpu_events(), |v| fd.set_vcpu_events(v))),
    ];
    let indices = kvm.kvm().get_msr_index_list().map(|l| l.as_slice().to_vec());
    out.push(result(
        "KVM_GET/SET_MSRS (KVM_GET_MSR_INDEX_LIST)",
        indices.map_err(|e| format!("index list: {e}")).and_then(|indices| {
            let req = crate::vstate::vcpu::state::SaveRequest { msrs: indices.clone().into(), lapic: true };
            let s = crate::vstate::vcpu::state::save(&fd, &req).map_err(|e| e.to_string())?;
            let refused_reads = s.refused.iter().filter(|r| r.starts_with("MSR")).count();
            let not_taken = crate::vstate::vcpu::state::restore(&fd, &s).map_err(|e| e.to_string())?;
            Ok(format!(
                "{} listed, {} readable, {} not written back{}",
                indices.len(),
                s.msrs.len(),
                not_taken.len(),
                if refused_reads + not_taken.len() > 0 {
                    format!(
                        " ({})",
                        s.refused
                            .iter()
                            .filter(|r| r.starts_with("MSR"))
                            .chain(&not_taken)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                } else {
                    String::new()
                }
            ))
        }),
    ));
    for (name, id) in [
        ("PIC master", KVM_IRQCHIP_PIC_MASTER),
        ("PIC slave", KVM_IRQCHIP_PIC_SLAVE),
        ("IOAPIC", KVM_IRQCHIP_IOAPIC),
    ] {
        let mut chip = kvm_irqchip { chip_id: id, ..Default::default() };
        let r = vm.fd().get_irqchip(&mut chip).map_err(|e| format!("get: {e}")).and_then(|()| {
            vm.fd().set_irqchip(&chip).map_err(|e| format!("set: {e}")).map(|()| String::new())
        });
        out.push(result(&format!("KVM_GET/SET_IRQCHIP ({name})"), r));
    }
    out.push(result("KVM_GET/SET_PIT2", pair(vm.fd().get_pit2(), |v| vm.fd().set_pit2(v))));
    out.push(result(
        "KVM_GET/SET_CLOCK",
        pair(vm.fd().get_clock(), |v| {
            let mut c = *v;
            c.flags = 0;
            vm.fd().set_clock(&c)
        }),
    ));
    out.push(result("KVM_MEM_LOG_DIRTY_PAGES + KVM_GET_DIRTY_LOG", dirty_log(&vm, &mem)));
    Ok(out)
}

/// Turns on dirty logging for the scratch VM's memory slot and reads the log once.
fn dirty_log(vm: &Vm, mem: &crate::vstate::memory::GuestMemory) -> Result<String, String> {
    let region = mem.iter().next().ok_or("no memory region")?;
    let host = region.get_host_address(vm_memory::MemoryRegionAddress(0)).map_err(|e| e.to_string())?;
    let desc = kvm_userspace_memory_region {
        slot: 0,
        flags: KVM_MEM_LOG_DIRTY_PAGES,
        guest_phys_addr: 0,
        memory_size: region.len(),
        userspace_addr: host as u64,
    };
    // SAFETY: the same live mapping, owned by `mem` (alive for this call), re-registered in
    // the same slot with only the dirty-logging flag added.
    unsafe { vm.fd().set_user_memory_region(desc) }
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    let bitmap =
        vm.fd().get_dirty_log(0, region.len() as usize).map_err(|e| format!("KVM_GET_DIRTY_LOG: {e}"))?;
    let dirty: u32 = bitmap.iter().map(|w| w.count_ones()).sum();
    Ok(format!(
        "{dirty} dirty pages in a fresh slot (KVM_CAP_DIRTY_LOG_RING: {})",
        vm.fd().check_extension_raw(kvm_bindings::KVM_CAP_DIRTY_LOG_RING.into()) > 0
    ))
}
