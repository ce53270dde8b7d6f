//! The iced-x86 decoder.

use super::{Instruction, Symbolize, Syntax};
use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Formatter, FormatterOutput, FormatterTextKind, GasFormatter,
    IntelFormatter, SymbolResolver, SymbolResult,
};
use std::collections::HashMap;

/// Names for the branch targets of one batch (iced wants a resolver it owns).
struct Resolver(HashMap<u64, String>);

impl SymbolResolver for Resolver {
    fn symbol(
        &mut self,
        _insn: &iced_x86::Instruction,
        _op: u32,
        _iop: Option<u32>,
        address: u64,
        _size: u32,
    ) -> Option<SymbolResult<'_>> {
        self.0.get(&address).map(|s| SymbolResult::with_str(address, s.as_str()))
    }
}

struct Text(String);

impl FormatterOutput for Text {
    fn write(&mut self, text: &str, _kind: FormatterTextKind) {
        self.0.push_str(text);
    }
}

pub(super) fn decode(
    code: &[u8],
    address: u64,
    bitness: u32,
    max: usize,
    syntax: Syntax,
    symbols: &dyn Symbolize,
) -> Vec<Instruction> {
    // First pass: which branch targets need names.
    let mut names = HashMap::new();
    for insn in Decoder::with_ip(bitness, code, address, DecoderOptions::NONE).into_iter().take(max) {
        let target = insn.near_branch_target();
        if target != 0 && !names.contains_key(&target) {
            if let Some(name) = symbols.symbolize(target) {
                names.insert(target, name);
            }
        }
    }
    let resolver = Box::new(Resolver(names));
    let mut decoder = Decoder::with_ip(bitness, code, address, DecoderOptions::NONE);
    let mut formatter: Box<dyn Formatter> = match syntax {
        Syntax::Intel => Box::new(IntelFormatter::with_options(Some(resolver), None)),
        Syntax::Gas => Box::new(GasFormatter::with_options(Some(resolver), None)),
    };
    formatter.options_mut().set_first_operand_char_index(8);
    formatter.options_mut().set_uppercase_hex(false);
    formatter.options_mut().set_hex_prefix("0x");
    formatter.options_mut().set_hex_suffix("");
    let mut out = Vec::new();
    while decoder.can_decode() && out.len() < max {
        let pos = decoder.position();
        let insn = decoder.decode();
        let len = insn.len();
        let bytes = code[pos..pos + len].to_vec();
        if insn.is_invalid() {
            out.push(Instruction::bad(insn.ip(), code.get(pos).copied()));
            // Resynchronise one byte later.
            let next = pos + 1;
            if next >= code.len() {
                break;
            }
            decoder.set_position(next).ok();
            decoder.set_ip(address.wrapping_add(next as u64));
            continue;
        }
        let mut text = Text(String::new());
        formatter.format(&insn, &mut text);
        let mut mnemonic = Text(String::new());
        formatter.format_mnemonic(&insn, &mut mnemonic);
        let is_call =
            insn.flow_control() == FlowControl::Call || insn.flow_control() == FlowControl::IndirectCall;
        let branch_target = match insn.flow_control() {
            FlowControl::Call | FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
                Some(insn.near_branch_target())
            }
            _ => None,
        }
        .filter(|t| *t != 0);
        out.push(Instruction {
            address: insn.ip(),
            bytes,
            mnemonic: mnemonic.0.trim().to_string(),
            text: text.0,
            next_ip: insn.next_ip(),
            is_call,
            branch_target,
            invalid: false,
        });
    }
    out
}
