//! Disassembly of guest code in the mode it runs in (16/32/64-bit), with iced-x86 as the
//! decoder and capstone available as a second opinion. Undecodable bytes become a `(bad)`
//! record, never an error or a panic.

mod capstone_backend;
mod iced_backend;

use crate::regs::CpuMode;
use serde::{Deserialize, Serialize};

/// Which decoder to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decoder {
    /// iced-x86 (the default).
    #[default]
    Iced,
    /// capstone.
    Capstone,
}

impl std::str::FromStr for Decoder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "iced" => Ok(Decoder::Iced),
            "capstone" => Ok(Decoder::Capstone),
            other => Err(format!("unknown decoder {other:?}: choose iced or capstone")),
        }
    }
}

/// Assembly syntax.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Syntax {
    /// Intel (the default).
    #[default]
    Intel,
    /// AT&T, as gdb's default.
    Gas,
}

/// One decoded instruction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// Its address (a guest-virtual RIP).
    pub address: u64,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The mnemonic alone, lower case.
    pub mnemonic: String,
    /// The full text, with branch targets symbolized where a symbolizer was given.
    pub text: String,
    /// The address of the next instruction.
    pub next_ip: u64,
    /// A near call.
    pub is_call: bool,
    /// The target of a direct near branch or call.
    pub branch_target: Option<u64>,
    /// Bytes that do not decode.
    pub invalid: bool,
}

impl Instruction {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it is empty (never: a bad byte is one byte long).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn bad(address: u64, byte: Option<u8>) -> Self {
        let bytes: Vec<u8> = byte.into_iter().collect();
        Instruction {
            address,
            next_ip: address.wrapping_add(bytes.len().max(1) as u64),
            bytes,
            mnemonic: "(bad)".into(),
            text: "(bad)".into(),
            is_call: false,
            branch_target: None,
            invalid: true,
        }
    }
}

/// Turns an address into `symbol+offset`, if it can.
pub trait Symbolize {
    /// The name for `addr`, if known.
    fn symbolize(&self, addr: u64) -> Option<String>;
}

impl Symbolize for () {
    fn symbolize(&self, _: u64) -> Option<String> {
        None
    }
}

/// Options for a disassembly.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// The decoder.
    pub decoder: Decoder,
    /// The syntax.
    pub syntax: Syntax,
}

/// Decodes up to `max` instructions from `code`, which starts at `address`.
pub fn disassemble(
    code: &[u8],
    address: u64,
    mode: CpuMode,
    max: usize,
    opts: Options,
    symbols: &dyn Symbolize,
) -> Vec<Instruction> {
    match opts.decoder {
        Decoder::Iced => iced_backend::decode(code, address, mode.bitness(), max, opts.syntax, symbols),
        Decoder::Capstone => {
            capstone_backend::decode(code, address, mode.bitness(), max, opts.syntax, symbols)
        }
    }
}

/// Decodes the one instruction at the start of `code` with iced-x86 (fault reports).
pub fn decode_one(code: &[u8], address: u64, mode: CpuMode) -> Instruction {
    disassemble(code, address, mode, 1, Options::default(), &())
        .into_iter()
        .next()
        .unwrap_or_else(|| Instruction::bad(address, code.first().copied()))
}

/// For "step over": the address after the instruction at the start of `code` when it is a
/// call, or `None` when a single step is enough.
pub fn step_over_target(code: &[u8], address: u64, mode: CpuMode) -> Option<u64> {
    let insn = decode_one(code, address, mode);
    (insn.is_call && !insn.invalid).then_some(insn.next_ip)
}

#[cfg(test)]
mod tests;
