//! The memory an instruction will touch: every byte it reads or writes (operands, pushes
//! and pops, string moves), worked out before it runs from its decoding (iced-x86's
//! instruction info) and the vCPU's registers. Software watchpoints fire on these accesses
//! as a debug register would on the real ones.

use super::Access;
use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, OpAccess, Register};
use inspect::regs::{Regs, SpecialRegs};

/// The memory accesses of the instruction at the start of `code` (fetched at `rip`, in a
/// `bitness`-bit code segment), given the registers it will execute with. Undecodable
/// bytes access nothing (the CPU will fault on them instead).
pub fn accesses(code: &[u8], rip: u64, bitness: u32, regs: &Regs, sregs: &SpecialRegs) -> Vec<Access> {
    let mut decoder = Decoder::with_ip(bitness, code, rip, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return vec![];
    }
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(&insn);
    info.used_memory()
        .iter()
        .filter_map(|m| {
            let (read, write) = match m.access() {
                OpAccess::Read | OpAccess::CondRead => (true, false),
                OpAccess::Write | OpAccess::CondWrite => (false, true),
                OpAccess::ReadWrite | OpAccess::ReadCondWrite => (true, true),
                _ => return None,
            };
            let addr = m.virtual_address(0, |reg, _, _| register_value(reg, bitness, regs, sregs))?;
            Some(Access { addr, len: m.memory_size().size().max(1) as u64, read, write })
        })
        .collect()
}

/// A register's value for an address computation.
fn register_value(reg: Register, bitness: u32, r: &Regs, s: &SpecialRegs) -> Option<u64> {
    if reg.is_segment_register() {
        // Long mode ignores the bases of CS, DS, ES and SS.
        return Some(match reg {
            Register::FS => s.fs.base,
            Register::GS => s.gs.base,
            _ if bitness == 64 => 0,
            Register::CS => s.cs.base,
            Register::DS => s.ds.base,
            Register::ES => s.es.base,
            Register::SS => s.ss.base,
            _ => return None,
        });
    }
    let full = match reg.full_register() {
        Register::RAX => r.rax,
        Register::RBX => r.rbx,
        Register::RCX => r.rcx,
        Register::RDX => r.rdx,
        Register::RSI => r.rsi,
        Register::RDI => r.rdi,
        Register::RSP => r.rsp,
        Register::RBP => r.rbp,
        Register::R8 => r.r8,
        Register::R9 => r.r9,
        Register::R10 => r.r10,
        Register::R11 => r.r11,
        Register::R12 => r.r12,
        Register::R13 => r.r13,
        Register::R14 => r.r14,
        Register::R15 => r.r15,
        Register::RIP => r.rip,
        _ => return None,
    };
    Some(match reg.size() {
        8 => full,
        4 => full & 0xffff_ffff,
        2 => full & 0xffff,
        // AH, BH, CH, DH.
        1 if matches!(reg, Register::AH | Register::BH | Register::CH | Register::DH) => (full >> 8) & 0xff,
        1 => full & 0xff,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> Regs {
        Regs { rax: 0x1000, rbx: 0x2000, rsp: 0x8000, rsi: 0x3000, rdi: 0x4000, ..Default::default() }
    }

    fn one(code: &[u8]) -> Vec<Access> {
        accesses(code, 0x10_0000, 64, &regs(), &SpecialRegs::default())
    }

    #[test]
    fn operands_pushes_and_rip_relative() {
        // mov [rax+8], rbx
        assert_eq!(
            one(&[0x48, 0x89, 0x58, 0x08]),
            [Access { addr: 0x1008, len: 8, read: false, write: true }]
        );
        // mov ecx, [rbx]
        assert_eq!(one(&[0x8b, 0x0b]), [Access { addr: 0x2000, len: 4, read: true, write: false }]);
        // add [rax], edx: read and write
        assert_eq!(one(&[0x01, 0x10]), [Access { addr: 0x1000, len: 4, read: true, write: true }]);
        // push rbx: a write just below RSP
        assert_eq!(one(&[0x53]), [Access { addr: 0x7ff8, len: 8, read: false, write: true }]);
        // mov [rip+0x10], rax: relative to the next instruction (7 bytes long)
        let a = one(&[0x48, 0x89, 0x05, 0x10, 0, 0, 0]);
        assert_eq!(a, [Access { addr: 0x10_0000 + 7 + 0x10, len: 8, read: false, write: true }]);
        // movsb: reads [rsi], writes [rdi]
        let a = one(&[0xa4]);
        assert!(a.contains(&Access { addr: 0x3000, len: 1, read: true, write: false }), "{a:?}");
        assert!(a.contains(&Access { addr: 0x4000, len: 1, read: false, write: true }), "{a:?}");
        // lea touches no memory; bytes that are invalid in 64-bit mode (push es) neither
        assert!(one(&[0x48, 0x8d, 0x40, 0x08]).is_empty());
        assert!(one(&[0x06]).is_empty());
    }

    #[test]
    fn segment_bases_and_sub_registers() {
        let mut s = SpecialRegs::default();
        s.fs.base = 0x7000_0000;
        s.ds.base = 0x5000; // ignored in long mode
                            // mov rax, fs:[rbx]
        let a = accesses(&[0x64, 0x48, 0x8b, 0x03], 0, 64, &regs(), &s);
        assert_eq!(a[0].addr, 0x7000_2000);
        let a = accesses(&[0x48, 0x8b, 0x03], 0, 64, &regs(), &s);
        assert_eq!(a[0].addr, 0x2000);
        // mov eax, [ebx] (address-size override): the 32-bit register.
        let r = Regs { rbx: 0xffff_ffff_0000_2000, ..regs() };
        assert_eq!(accesses(&[0x67, 0x8b, 0x03], 0, 64, &r, &s)[0].addr, 0x2000);
    }
}
