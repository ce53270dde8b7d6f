//! Conversions between KVM's register structs and inspect's plain ones.

use inspect::regs::{DescriptorTable, Regs, Segment, SpecialRegs};
use kvm_bindings::{kvm_dtable, kvm_regs, kvm_segment, kvm_sregs};

/// KVM general registers → inspect.
pub fn regs_from_kvm(r: &kvm_regs) -> Regs {
    Regs {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
    }
}

/// inspect general registers → KVM.
pub fn regs_to_kvm(r: &Regs) -> kvm_regs {
    kvm_regs {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
    }
}

fn segment_from_kvm(s: &kvm_segment) -> Segment {
    Segment {
        selector: s.selector,
        base: s.base,
        limit: s.limit,
        type_: s.type_,
        dpl: s.dpl,
        present: s.present != 0,
        long: s.l != 0,
        db: s.db != 0,
        g: s.g != 0,
        s: s.s != 0,
        unusable: s.unusable != 0,
    }
}

fn segment_to_kvm(s: &Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: u8::from(s.present),
        dpl: s.dpl,
        db: u8::from(s.db),
        s: u8::from(s.s),
        l: u8::from(s.long),
        g: u8::from(s.g),
        avl: 0,
        unusable: u8::from(s.unusable),
        padding: 0,
    }
}

fn dtable_from_kvm(d: &kvm_dtable) -> DescriptorTable {
    DescriptorTable { base: d.base, limit: d.limit }
}

/// KVM special registers → inspect.
pub fn sregs_from_kvm(s: &kvm_sregs) -> SpecialRegs {
    SpecialRegs {
        cs: segment_from_kvm(&s.cs),
        ds: segment_from_kvm(&s.ds),
        es: segment_from_kvm(&s.es),
        fs: segment_from_kvm(&s.fs),
        gs: segment_from_kvm(&s.gs),
        ss: segment_from_kvm(&s.ss),
        tr: segment_from_kvm(&s.tr),
        ldt: segment_from_kvm(&s.ldt),
        gdt: dtable_from_kvm(&s.gdt),
        idt: dtable_from_kvm(&s.idt),
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.apic_base,
    }
}

/// Applies inspect special registers onto KVM's (keeping the interrupt bitmap).
pub fn sregs_to_kvm(base: &kvm_sregs, s: &SpecialRegs) -> kvm_sregs {
    let mut k = *base;
    k.cs = segment_to_kvm(&s.cs);
    k.ds = segment_to_kvm(&s.ds);
    k.es = segment_to_kvm(&s.es);
    k.fs = segment_to_kvm(&s.fs);
    k.gs = segment_to_kvm(&s.gs);
    k.ss = segment_to_kvm(&s.ss);
    k.tr = segment_to_kvm(&s.tr);
    k.ldt = segment_to_kvm(&s.ldt);
    k.gdt = kvm_dtable { base: s.gdt.base, limit: s.gdt.limit, padding: [0; 3] };
    k.idt = kvm_dtable { base: s.idt.base, limit: s.idt.limit, padding: [0; 3] };
    k.cr0 = s.cr0;
    k.cr2 = s.cr2;
    k.cr3 = s.cr3;
    k.cr4 = s.cr4;
    k.cr8 = s.cr8;
    k.efer = s.efer;
    k.apic_base = s.apic_base;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let r = kvm_regs { rax: 1, r15: 15, rip: 0x1000, rflags: 0x202, ..Default::default() };
        assert_eq!(regs_to_kvm(&regs_from_kvm(&r)), r);
        let mut s = kvm_sregs::default();
        s.cs = kvm_segment {
            selector: 0x1b,
            dpl: 3,
            l: 1,
            present: 1,
            type_: 0xb,
            s: 1,
            limit: 0xffff_ffff,
            g: 1,
            ..Default::default()
        };
        s.cr3 = 0x9000;
        s.efer = 0x500;
        s.gdt.limit = 55;
        assert_eq!(sregs_to_kvm(&kvm_sregs::default(), &sregs_from_kvm(&s)), s);
    }
}
