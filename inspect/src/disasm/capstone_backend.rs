//! The capstone decoder: a second opinion on iced-x86.

use super::{Instruction, Symbolize, Syntax};
use capstone::arch::x86::{ArchMode, ArchSyntax};
use capstone::arch::{BuildsCapstone, BuildsCapstoneSyntax, DetailsArchInsn};
use capstone::Capstone;

pub(super) fn decode(
    code: &[u8],
    address: u64,
    bitness: u32,
    max: usize,
    syntax: Syntax,
    symbols: &dyn Symbolize,
) -> Vec<Instruction> {
    let mode = match bitness {
        16 => ArchMode::Mode16,
        32 => ArchMode::Mode32,
        _ => ArchMode::Mode64,
    };
    let syn = match syntax {
        Syntax::Intel => ArchSyntax::Intel,
        Syntax::Gas => ArchSyntax::Att,
    };
    let Ok(cs) = Capstone::new().x86().mode(mode).syntax(syn).detail(true).build() else {
        return vec![Instruction::bad(address, code.first().copied())];
    };
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < code.len() && out.len() < max {
        let ip = address.wrapping_add(pos as u64);
        let Ok(insns) = cs.disasm_count(&code[pos..], ip, 1) else { break };
        let Some(insn) = insns.iter().next() else {
            out.push(Instruction::bad(ip, code.get(pos).copied()));
            pos += 1;
            continue;
        };
        let mnemonic = insn.mnemonic().unwrap_or("").to_string();
        let ops = insn.op_str().unwrap_or("").to_string();
        let len = insn.bytes().len();
        let is_call = mnemonic.starts_with("call");
        let branch_target = if is_call || mnemonic.starts_with('j') {
            cs.insn_detail(insn).ok().and_then(|d| {
                let arch = d.arch_detail();
                let x86 = arch.x86()?;
                x86.operands().find_map(|op| match op.op_type {
                    capstone::arch::x86::X86OperandType::Imm(v) => Some(v as u64),
                    _ => None,
                })
            })
        } else {
            None
        };
        let mut text = if ops.is_empty() { mnemonic.clone() } else { format!("{mnemonic:<7} {ops}") };
        if let Some(t) = branch_target {
            if let Some(name) = symbols.symbolize(t) {
                text = format!("{text} <{name}>");
            }
        }
        out.push(Instruction {
            address: ip,
            bytes: insn.bytes().to_vec(),
            mnemonic,
            text,
            next_ip: ip.wrapping_add(len as u64),
            is_call,
            branch_target,
            invalid: false,
        });
        pos += len.max(1);
    }
    out
}
