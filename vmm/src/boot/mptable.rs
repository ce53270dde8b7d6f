//! The MultiProcessor Specification table (Intel MP spec 1.4) that tells a Linux kernel
//! without ACPI which processors, I/O APIC and interrupt lines the machine has.
//!
//! vmscope gives its Linux guest no ACPI. Without an MP table an SMP kernel finds no SMP
//! configuration, runs on the boot CPU alone and never sets up the local APIC timer: its
//! clock event stays the PIT, whose 16-bit counter lets an idle tickless kernel sleep at
//! most ~27 ms. With the table the kernel uses the local APIC (its timer, and the other
//! vCPUs through INIT/SIPI) and routes the legacy lines through the in-kernel I/O APIC.
//!
//! The table sits in the last KiB of base memory (639 KiB), one of the places the kernel
//! scans for the floating pointer, inside the range the memory map reserves
//! ([`super::pvh::layout::EBDA_START`] up to 1 MiB).

use super::pvh::layout::{EBDA_START, HIGH_RAM_START};
use inspect::Gpa;

/// Where the floating pointer goes (the configuration table follows it).
pub const MPTABLE_GPA: u64 = EBDA_START;
/// Room for both: up to the legacy video hole at 640 KiB.
pub const MPTABLE_MAX: usize = 0xa_0000 - EBDA_START as usize;

/// The local APIC's MMIO base (the architectural default; KVM's in-kernel APIC).
pub const LAPIC_BASE: u32 = 0xfee0_0000;
/// The I/O APIC's MMIO base (KVM's in-kernel I/O APIC).
pub const IOAPIC_BASE: u32 = 0xfec0_0000;
/// The in-kernel I/O APIC's input pins; ISA IRQ n is wired to pin n.
pub const IOAPIC_PINS: u8 = 24;

/// Version of the MP spec written (1.4).
const SPEC_REV: u8 = 4;
/// Local APIC version reported per processor (an integrated APIC, as KVM's reads).
const LAPIC_VERSION: u8 = 0x14;
/// I/O APIC version (82093AA).
const IOAPIC_VERSION: u8 = 0x11;
/// The only bus: ISA, id 0.
const ISA_BUS: u8 = 0;

/// Entry types (MP spec table 4-3).
mod entry {
    pub const PROCESSOR: u8 = 0;
    pub const BUS: u8 = 1;
    pub const IOAPIC: u8 = 2;
    pub const IO_INTERRUPT: u8 = 3;
    pub const LOCAL_INTERRUPT: u8 = 4;
}

/// Interrupt types of the interrupt assignment entries (MP spec table 4-8).
mod int_type {
    pub const INT: u8 = 0;
    pub const NMI: u8 = 1;
    pub const EXTINT: u8 = 3;
}

/// Processor entry flags.
const CPU_ENABLED: u8 = 1;
const CPU_BOOT_PROCESSOR: u8 = 2;
/// Processor signature: family 6 (the kernel reads the real one from CPUID).
const CPU_SIGNATURE: u32 = 0x600;
/// Processor feature flags: an FPU and an on-chip APIC (CPUID.1:EDX bits 0 and 9).
const CPU_FEATURES: u32 = 1 | 1 << 9;

/// Errors from building the table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MpTableError {
    /// More vCPUs than processor entries fit below 640 KiB.
    #[error("an MP table for {vcpus} vCPUs needs {bytes} bytes; at most {MPTABLE_MAX} fit below 640 KiB")]
    TooManyCpus {
        /// vCPUs asked for.
        vcpus: usize,
        /// Bytes the table would take.
        bytes: usize,
    },
    /// No vCPU at all.
    #[error("an MP table needs at least one vCPU")]
    NoCpu,
}

/// The floating pointer and the configuration table for `vcpus` processors (APIC ids
/// 0..vcpus, the first the boot processor), as bytes to write at [`MPTABLE_GPA`].
pub fn build(vcpus: usize) -> Result<(Gpa, Vec<u8>), MpTableError> {
    if vcpus == 0 {
        return Err(MpTableError::NoCpu);
    }
    let bytes = size(vcpus);
    if bytes > MPTABLE_MAX || vcpus >= 0xff {
        return Err(MpTableError::TooManyCpus { vcpus, bytes });
    }
    let table_gpa = MPTABLE_GPA + 16;
    let table = config_table(vcpus as u8);
    let mut out = floating_pointer(table_gpa as u32).to_vec();
    out.extend_from_slice(&table);
    debug_assert!(table_gpa + (table.len() as u64) <= HIGH_RAM_START);
    Ok((Gpa(MPTABLE_GPA), out))
}

/// Bytes of the floating pointer and table for `vcpus` processors.
pub fn size(vcpus: usize) -> usize {
    16 + 44 + 20 * vcpus + 8 + 8 + 8 * usize::from(IOAPIC_PINS) + 2 * 8
}

/// The 16-byte MP floating pointer structure: where the table is, no default config.
fn floating_pointer(table_gpa: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(b"_MP_");
    b[4..8].copy_from_slice(&table_gpa.to_le_bytes());
    b[8] = 1; // length in 16-byte units
    b[9] = SPEC_REV;
    // b[11] = 0: a configuration table is present; b[12] = 0: virtual wire mode, no IMCR.
    b[10] = checksum(&b);
    b
}

/// The configuration table: header, processors, the ISA bus, the I/O APIC, its 24 lines
/// (ISA IRQ n to pin n, as KVM's default routing wires GSI n), and the local lines
/// (LINT0 ExtINT from the PIC, LINT1 NMI), as `linux::setup_vcpu` programs them.
fn config_table(vcpus: u8) -> Vec<u8> {
    let ioapic_id = vcpus; // the first id after the processors'
    let mut entries = Vec::new();
    for id in 0..vcpus {
        let mut e = [0u8; 20];
        e[0] = entry::PROCESSOR;
        e[1] = id;
        e[2] = LAPIC_VERSION;
        e[3] = CPU_ENABLED | if id == 0 { CPU_BOOT_PROCESSOR } else { 0 };
        e[4..8].copy_from_slice(&CPU_SIGNATURE.to_le_bytes());
        e[8..12].copy_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.push(e.to_vec());
    }
    entries.push(vec![entry::BUS, ISA_BUS, b'I', b'S', b'A', b' ', b' ', b' ']);
    let mut ioapic = vec![entry::IOAPIC, ioapic_id, IOAPIC_VERSION, 1];
    ioapic.extend_from_slice(&IOAPIC_BASE.to_le_bytes());
    entries.push(ioapic);
    for pin in 0..IOAPIC_PINS {
        // Flags 0: polarity and trigger mode conform to the bus (ISA: edge, active high).
        entries.push(vec![entry::IO_INTERRUPT, int_type::INT, 0, 0, ISA_BUS, pin, ioapic_id, pin]);
    }
    entries.push(vec![entry::LOCAL_INTERRUPT, int_type::EXTINT, 0, 0, ISA_BUS, 0, 0xff, 0]);
    entries.push(vec![entry::LOCAL_INTERRUPT, int_type::NMI, 0, 0, ISA_BUS, 0, 0xff, 1]);

    let body: Vec<u8> = entries.concat();
    let length = (44 + body.len()) as u16;
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"PCMP");
    h[4..6].copy_from_slice(&length.to_le_bytes());
    h[6] = SPEC_REV;
    h[8..16].copy_from_slice(b"VMSCOPE ");
    h[16..28].copy_from_slice(b"MICROVM     ");
    h[34..36].copy_from_slice(&(entries.len() as u16).to_le_bytes());
    h[36..40].copy_from_slice(&LAPIC_BASE.to_le_bytes());
    let mut table = h.to_vec();
    table.extend_from_slice(&body);
    table[7] = checksum(&table);
    table
}

/// The byte that makes `bytes` sum to zero (mod 256).
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, b| s.wrapping_sub(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
    }

    /// Reads the table back the way Linux's mpparse does: the floating pointer's checksum
    /// and pointer, the header's signature, length, checksum and count, each entry by type.
    #[test]
    fn linux_reads_what_was_written() {
        for vcpus in [1usize, 2, 32] {
            let (gpa, b) = build(vcpus).unwrap();
            assert_eq!(gpa.0, 0x9_fc00);
            assert_eq!(b.len(), size(vcpus));
            assert!(b.len() <= MPTABLE_MAX);
            assert_eq!(&b[0..4], b"_MP_");
            assert_eq!(sum(&b[0..16]), 0);
            assert_eq!(b[9], 4);
            let ptr = u32::from_le_bytes(b[4..8].try_into().unwrap()) as u64;
            let t = &b[(ptr - gpa.0) as usize..];
            assert_eq!(&t[0..4], b"PCMP");
            let len = u16::from_le_bytes([t[4], t[5]]) as usize;
            assert_eq!(len, t.len());
            assert_eq!(sum(t), 0);
            assert_eq!(u32::from_le_bytes(t[36..40].try_into().unwrap()), LAPIC_BASE);
            let count = u16::from_le_bytes([t[34], t[35]]) as usize;
            let (mut at, mut cpus, mut boot, mut ints, mut ioapic) = (44, 0, 0, 0, None);
            for _ in 0..count {
                match t[at] {
                    0 => {
                        assert_eq!(t[at + 1], cpus as u8, "APIC ids in vCPU order");
                        assert_ne!(t[at + 3] & CPU_ENABLED, 0);
                        boot += usize::from(t[at + 3] & CPU_BOOT_PROCESSOR != 0);
                        cpus += 1;
                        at += 20;
                    }
                    1 => {
                        assert_eq!(&t[at + 2..at + 8], b"ISA   ");
                        at += 8;
                    }
                    2 => {
                        ioapic = Some(t[at + 1]);
                        assert_eq!(u32::from_le_bytes(t[at + 4..at + 8].try_into().unwrap()), IOAPIC_BASE);
                        at += 8;
                    }
                    3 => {
                        assert_eq!(Some(t[at + 6]), ioapic, "lines go to the I/O APIC declared before");
                        assert_eq!(t[at + 5], t[at + 7], "ISA IRQ n on pin n");
                        ints += 1;
                        at += 8;
                    }
                    4 => at += 8,
                    other => panic!("unknown entry type {other}"),
                }
            }
            assert_eq!(at, len);
            assert_eq!((cpus, boot, ints), (vcpus, 1, 24));
            assert!(ioapic.unwrap() as usize >= vcpus, "the I/O APIC's id is not a processor's");
        }
    }

    #[test]
    fn refuses_what_does_not_fit() {
        assert_eq!(build(0), Err(MpTableError::NoCpu));
        assert!(matches!(build(40), Err(MpTableError::TooManyCpus { vcpus: 40, .. })));
        assert!(build(37).is_ok());
    }
}
