//! The MSRs a Linux guest's boot vCPU starts with (as Firecracker sets them) and the
//! LAPIC's local interrupt pins.

/// (index, value) pairs for boot.
pub fn boot_msrs() -> Vec<(u32, u64)> {
    vec![
        (0x174, 0),             // IA32_SYSENTER_CS
        (0x175, 0),             // IA32_SYSENTER_ESP
        (0x176, 0),             // IA32_SYSENTER_EIP
        (0xc000_0081, 0),       // STAR
        (0xc000_0082, 0),       // LSTAR
        (0xc000_0083, 0),       // CSTAR
        (0xc000_0084, 0),       // SYSCALL_MASK
        (0xc000_0102, 0),       // KERNEL_GS_BASE
        (0x10, 0),              // IA32_TSC
        (0x1a0, 1),             // IA32_MISC_ENABLE: fast strings
        (0x2ff, (1 << 11) | 6), // MTRRdefType: MTRRs on, default write-back
    ]
}

/// Offset of LVT LINT0 in the LAPIC register page.
pub const APIC_LVT0: usize = 0x350;
/// Offset of LVT LINT1.
pub const APIC_LVT1: usize = 0x360;
/// Delivery mode ExtINT.
pub const APIC_MODE_EXTINT: u32 = 0x7;
/// Delivery mode NMI.
pub const APIC_MODE_NMI: u32 = 0x4;

/// Sets the delivery mode (bits 10:8) of the 32-bit LAPIC register at `offset` in `regs`.
pub fn set_apic_delivery_mode(regs: &mut [u8], offset: usize, mode: u32) {
    let mut b = [0u8; 4];
    b.copy_from_slice(&regs[offset..offset + 4]);
    let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
    regs[offset..offset + 4].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_delivery_modes() {
        let mut regs = vec![0u8; 1024];
        regs[0x350] = 0x10; // vector bits survive
        set_apic_delivery_mode(&mut regs, APIC_LVT0, APIC_MODE_EXTINT);
        assert_eq!(u32::from_le_bytes(regs[0x350..0x354].try_into().unwrap()), 0x0710);
        set_apic_delivery_mode(&mut regs, APIC_LVT1, APIC_MODE_NMI);
        assert_eq!(u32::from_le_bytes(regs[0x360..0x364].try_into().unwrap()) & 0x700, 0x400);
        assert!(boot_msrs().iter().any(|&(i, v)| i == 0x2ff && v == 0x806));
    }
}
