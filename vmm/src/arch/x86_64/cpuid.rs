//! Normalizing the CPUID leaves KVM supports into what one vCPU of a vmscope VM reports.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

/// CPUID.1:ECX bit 31: running under a hypervisor.
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:EDX bit 28: HTT (the logical-processor count in EBX is valid).
const LEAF1_EDX_HTT: u32 = 1 << 28;
/// KVM's paravirtual feature leaf (`KVM_CPUID_FEATURES`).
const KVM_CPUID_FEATURES: u32 = 0x4000_0001;
/// Its EAX bits whose guest side is a hypercall instruction in the kernel: PV_UNHALT (bit 7,
/// `KVM_HC_KICK_CPU`), PV_SEND_IPI (bit 11) and PV_SCHED_YIELD (bit 13).
const KVM_FEATURES_BY_HYPERCALL: u32 = 1 << 7 | 1 << 11 | 1 << 13;

/// Adjusts `cpuid` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `index` of `count`:
/// the initial APIC id (leaf 1 EBX[31:24]) and x2APIC id (leaves 0xB and 0x1F EDX) become
/// `index`, the logical-processor count (leaf 1 EBX[23:16]) becomes `count`, and the
/// hypervisor bit is set so guests know they are virtualized. Unless `hypercalls`, the KVM
/// paravirtual features a kernel uses through `vmcall`/`vmmcall` are hidden: on PVM a
/// guest kernel's hypercall runs in KVM's instruction emulator, which cannot complete it
/// (KVM rewrites the instruction to the host's flavour and retries, for ever), so a Linux
/// guest with two vCPUs hung in its first PV IPI; without them it sends IPIs through its
/// local APIC and spins natively.
pub fn normalize(cpuid: &mut CpuId, index: u8, count: u8, hypercalls: bool) {
    for entry in cpuid.as_mut_slice() {
        normalize_entry(entry, index, count, hypercalls);
    }
}

fn normalize_entry(entry: &mut kvm_cpuid_entry2, index: u8, count: u8, hypercalls: bool) {
    match entry.function {
        KVM_CPUID_FEATURES if !hypercalls => entry.eax &= !KVM_FEATURES_BY_HYPERCALL,
        1 => {
            entry.ebx = (entry.ebx & 0x0000_ffff) | (u32::from(index) << 24) | (u32::from(count) << 16);
            entry.ecx |= LEAF1_ECX_HYPERVISOR;
            if count > 1 {
                entry.edx |= LEAF1_EDX_HTT;
            }
        }
        0xb | 0x1f => entry.edx = u32::from(index),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apic_ids_and_counts() {
        let mut cpuid = CpuId::from_entries(&[
            kvm_cpuid_entry2 { function: 1, ebx: 0xff00_0800, ..Default::default() },
            kvm_cpuid_entry2 { function: 0xb, index: 0, edx: 7, ..Default::default() },
            kvm_cpuid_entry2 { function: 0, eax: 0xd, ..Default::default() },
        ])
        .unwrap();
        normalize(&mut cpuid, 2, 4, true);
        let e = cpuid.as_slice();
        assert_eq!(e[0].ebx, 0x0204_0800);
        assert_ne!(e[0].ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_ne!(e[0].edx & LEAF1_EDX_HTT, 0);
        assert_eq!(e[1].edx, 2);
        assert_eq!(e[2].eax, 0xd, "other leaves are untouched");
    }

    #[test]
    fn hypercall_features_hidden_where_they_cannot_complete() {
        let pv = kvm_cpuid_entry2 { function: KVM_CPUID_FEATURES, eax: 0x01ff_ffff, ..Default::default() };
        for (hypercalls, want) in [(true, 0x01ff_ffff), (false, 0x01ff_ffff & !(1 << 7 | 1 << 11 | 1 << 13))]
        {
            let mut cpuid = CpuId::from_entries(&[pv]).unwrap();
            normalize(&mut cpuid, 0, 2, hypercalls);
            assert_eq!(cpuid.as_slice()[0].eax, want);
        }
    }
}
