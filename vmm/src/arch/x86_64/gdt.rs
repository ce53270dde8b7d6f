//! The Global Descriptor Table vmscope installs for long-mode guests, and the conversion
//! between descriptors and KVM's `kvm_segment` (Intel SDM vol. 3, 3.4.5).

use kvm_bindings::kvm_segment;
use vmscope_abi::{gdt as sel, layout};

/// Descriptor type for a code segment: execute/read, accessed.
const TYPE_CODE: u8 = 0xb;
/// Descriptor type for a data segment: read/write, accessed.
const TYPE_DATA: u8 = 0x3;
/// System descriptor type for a busy 64-bit TSS.
const TYPE_TSS_BUSY: u8 = 0xb;
/// Size of the 64-bit TSS proper.
pub const TSS_SIZE: usize = 0x68;
/// Size of an I/O permission bitmap covering all 65536 ports.
pub const IO_BITMAP_SIZE: usize = 0x2000;
/// The TSS limit: the TSS, the I/O bitmap and its terminating 0xff byte, minus one.
pub const TSS_LIMIT: u32 = (TSS_SIZE + IO_BITMAP_SIZE) as u32;

/// The TSS image: zero stacks, the I/O map base right after the TSS, a bitmap of zeros
/// (every port allowed) and the terminating all-ones byte the SDM requires.
pub fn tss_image() -> Vec<u8> {
    let mut tss = vec![0u8; TSS_SIZE + IO_BITMAP_SIZE + 1];
    // I/O map base address, at offset 0x66.
    tss[0x66..0x68].copy_from_slice(&(TSS_SIZE as u16).to_le_bytes());
    tss[TSS_SIZE + IO_BITMAP_SIZE] = 0xff;
    tss
}

/// The fields of a segment descriptor that vmscope sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Base address (low 32 bits for code/data, 64 for system descriptors).
    pub base: u64,
    /// 20-bit limit (in pages when `g`).
    pub limit: u32,
    /// 4-bit type.
    pub type_: u8,
    /// S: code/data when set, system when clear.
    pub s: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Present.
    pub p: bool,
    /// L: 64-bit code.
    pub l: bool,
    /// D/B: 32-bit default size.
    pub db: bool,
    /// G: limit in 4 KiB units.
    pub g: bool,
}

impl Descriptor {
    /// A flat 64-bit code segment at `dpl`.
    pub fn code64(dpl: u8) -> Self {
        Self { base: 0, limit: 0xfffff, type_: TYPE_CODE, s: true, dpl, p: true, l: true, db: false, g: true }
    }

    /// A flat data segment at `dpl`.
    pub fn data(dpl: u8) -> Self {
        Self { base: 0, limit: 0xfffff, type_: TYPE_DATA, s: true, dpl, p: true, l: false, db: true, g: true }
    }

    /// A busy 64-bit TSS at `base`.
    pub fn tss(base: u64) -> Self {
        Self {
            base,
            limit: TSS_LIMIT,
            type_: TYPE_TSS_BUSY,
            s: false,
            dpl: 0,
            p: true,
            l: false,
            db: false,
            g: false,
        }
    }

    /// The low 8 bytes of the descriptor as it sits in the GDT.
    pub fn encode(&self) -> u64 {
        let base = self.base & 0xffff_ffff;
        let limit = u64::from(self.limit & 0xfffff);
        let access = u64::from(self.type_ & 0xf)
            | (u64::from(self.s) << 4)
            | (u64::from(self.dpl & 3) << 5)
            | (u64::from(self.p) << 7);
        let flags = (u64::from(self.l) << 1) | (u64::from(self.db) << 2) | (u64::from(self.g) << 3);
        (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (access << 40)
            | ((limit >> 16) << 48)
            | (flags << 52)
            | ((base >> 24) << 56)
    }

    /// The high 8 bytes of a 16-byte system descriptor (bits 63:32 of the base).
    pub fn encode_high(&self) -> u64 {
        self.base >> 32
    }

    /// Decodes an 8-byte code/data descriptor.
    pub fn decode(raw: u64) -> Self {
        let access = (raw >> 40) as u8;
        let flags = ((raw >> 52) & 0xf) as u8;
        Self {
            base: ((raw >> 16) & 0xff_ffff) | (((raw >> 56) & 0xff) << 24),
            limit: ((raw & 0xffff) | (((raw >> 48) & 0xf) << 16)) as u32,
            type_: access & 0xf,
            s: access & 0x10 != 0,
            dpl: (access >> 5) & 3,
            p: access & 0x80 != 0,
            l: flags & 2 != 0,
            db: flags & 4 != 0,
            g: flags & 8 != 0,
        }
    }

    /// The hidden segment-register state KVM loads for this descriptor with `selector`.
    pub fn to_kvm_segment(&self, selector: u16) -> kvm_segment {
        let limit = if self.g { (self.limit << 12) | 0xfff } else { self.limit };
        kvm_segment {
            base: self.base,
            limit,
            selector,
            type_: self.type_,
            present: u8::from(self.p),
            dpl: self.dpl,
            db: u8::from(self.db),
            s: u8::from(self.s),
            l: u8::from(self.l),
            g: u8::from(self.g),
            avl: 0,
            unusable: u8::from(!self.p),
            padding: 0,
        }
    }
}

/// The GDT vmscope installs: null, kernel code/data, user code/data, TSS (two slots).
pub fn gdt_entries() -> [u64; 7] {
    let tss = Descriptor::tss(layout::TSS_GPA);
    [
        0,
        Descriptor::code64(0).encode(),
        Descriptor::data(0).encode(),
        Descriptor::code64(3).encode(),
        Descriptor::data(3).encode(),
        tss.encode(),
        tss.encode_high(),
    ]
}

/// The selectors and descriptors for a guest at CPL `cpl` (0 or 3): (CS, data, TSS).
pub fn segments_for(cpl: u8) -> (kvm_segment, kvm_segment, kvm_segment) {
    let (cs_sel, ds_sel) =
        if cpl == 3 { (sel::USER_CS, sel::USER_DS) } else { (sel::KERNEL_CS, sel::KERNEL_DS) };
    (
        Descriptor::code64(cpl).to_kvm_segment(cs_sel),
        Descriptor::data(cpl).to_kvm_segment(ds_sel),
        Descriptor::tss(layout::TSS_GPA).to_kvm_segment(sel::TSS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_encodings() {
        // The classic flat long-mode descriptors.
        assert_eq!(Descriptor::code64(0).encode(), 0x00af_9b00_0000_ffff);
        assert_eq!(Descriptor::data(0).encode(), 0x00cf_9300_0000_ffff);
        assert_eq!(Descriptor::code64(3).encode(), 0x00af_fb00_0000_ffff);
        assert_eq!(Descriptor::data(3).encode(), 0x00cf_f300_0000_ffff);
    }

    #[test]
    fn encode_decode_round_trip() {
        for d in [Descriptor::code64(0), Descriptor::data(3), Descriptor::tss(0x2000)] {
            assert_eq!(Descriptor::decode(d.encode()), d);
        }
        let tss = Descriptor::tss(0x1234_5678_9abc_d000);
        assert_eq!(tss.encode_high(), 0x1234_5678);
        assert_eq!(Descriptor::decode(tss.encode()).base, 0x9abc_d000);
    }

    #[test]
    fn kvm_segments_match_the_selectors() {
        let (cs, ds, tr) = segments_for(3);
        assert_eq!((cs.selector, cs.dpl, cs.l, cs.limit), (sel::USER_CS, 3, 1, 0xffff_ffff));
        assert_eq!((ds.selector, ds.dpl, ds.db), (sel::USER_DS, 3, 1));
        assert_eq!((tr.selector, tr.type_, tr.s, tr.limit), (sel::TSS, 0xb, 0, TSS_LIMIT));
        let tss = tss_image();
        assert_eq!(tss.len() as u32, TSS_LIMIT + 1);
        assert_eq!(u16::from_le_bytes([tss[0x66], tss[0x67]]), 0x68);
        let gdt = gdt_entries();
        assert_eq!(Descriptor::decode(gdt[usize::from(sel::USER_CS >> 3)]).dpl, 3);
    }
}
