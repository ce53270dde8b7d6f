//! Symbols: names for addresses and addresses for names, from an ELF's symbol table (the
//! unikernel, a vmlinux), from a kallsyms dump, and source lines from DWARF.

mod lines;

pub use lines::SourceLines;

use crate::disasm::Symbolize;
use object::{Object, ObjectSymbol, SymbolKind};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;

/// Errors from loading symbols.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    /// The ELF could not be parsed.
    #[error("{name} is not a valid ELF file: {reason}")]
    BadElf {
        /// The file.
        name: String,
        /// What was wrong, in words.
        reason: String,
    },
    /// The file could not be read.
    #[error("cannot read {name}")]
    Read {
        /// The file.
        name: String,
        /// The operating system's error (errno), shown as the cause.
        #[source]
        source: std::io::Error,
    },
    /// A kallsyms line did not parse.
    #[error("{name} line {line}: not a kallsyms entry (expected `ADDRESS TYPE NAME`)")]
    BadKallsyms {
        /// The file.
        name: String,
        /// The line number.
        line: usize,
    },
    /// DWARF could not be loaded.
    #[error("cannot read the DWARF of {name}: {reason}")]
    Dwarf {
        /// The file.
        name: String,
        /// What was wrong, in words.
        reason: String,
    },
}

/// What a symbol names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Code.
    Function,
    /// Data.
    Object,
    /// Anything else.
    Other,
}

/// One symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Symbol {
    /// Its name.
    pub name: String,
    /// Its address.
    pub addr: u64,
    /// Its size, when known (0 otherwise).
    pub size: u64,
    /// What it names.
    pub kind: Kind,
}

/// An address expressed as `symbol+offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Located<'a> {
    /// The symbol.
    pub symbol: &'a Symbol,
    /// The offset into it.
    pub offset: u64,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.offset == 0 {
            f.write_str(&self.symbol.name)
        } else {
            write!(f, "{}+{:#x}", self.symbol.name, self.offset)
        }
    }
}

/// A set of symbols, sorted by address.
#[derive(Clone, Debug, Default)]
pub struct SymbolTable {
    symbols: Vec<Symbol>,
    by_name: HashMap<String, usize>,
}

/// Beyond this distance from a symbol of unknown size, an address is not called
/// `symbol+offset`.
const MAX_UNSIZED_OFFSET: u64 = 0x10_0000;

impl SymbolTable {
    /// From symbols in any order.
    pub fn new(mut symbols: Vec<Symbol>) -> Self {
        symbols.retain(|s| !s.name.is_empty() && s.addr != 0);
        symbols.sort_by(|a, b| a.addr.cmp(&b.addr).then(b.size.cmp(&a.size)));
        let by_name = symbols.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
        Self { symbols, by_name }
    }

    /// From an ELF image's symbol table (`name` is used in errors).
    pub fn from_elf(name: &str, bytes: &[u8]) -> Result<Self, SymbolError> {
        let file = object::File::parse(bytes)
            .map_err(|e| SymbolError::BadElf { name: name.into(), reason: e.to_string() })?;
        let symbols = file
            .symbols()
            .filter(|s| s.is_definition())
            .filter_map(|s| {
                let kind = match s.kind() {
                    SymbolKind::Text => Kind::Function,
                    SymbolKind::Data => Kind::Object,
                    _ => Kind::Other,
                };
                Some(Symbol { name: s.name().ok()?.to_string(), addr: s.address(), size: s.size(), kind })
            })
            .collect();
        Ok(Self::new(symbols))
    }

    /// From an ELF file on disk.
    pub fn from_elf_file(path: &std::path::Path) -> Result<Self, SymbolError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SymbolError::Read { name: name.clone(), source })?;
        Self::from_elf(&name, &bytes)
    }

    /// From `/proc/kallsyms` text (`ffffffff81000000 T _stext`, optionally `[module]`).
    pub fn from_kallsyms(name: &str, text: &str) -> Result<Self, SymbolError> {
        let mut symbols = vec![];
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let bad = || SymbolError::BadKallsyms { name: name.into(), line: i + 1 };
            let addr = u64::from_str_radix(parts.next().ok_or_else(bad)?, 16).map_err(|_| bad())?;
            let ty = parts.next().ok_or_else(bad)?;
            let sym = parts.next().ok_or_else(bad)?;
            let kind = match ty {
                "T" | "t" | "W" | "w" => Kind::Function,
                "D" | "d" | "B" | "b" | "R" | "r" => Kind::Object,
                _ => Kind::Other,
            };
            symbols.push(Symbol { name: sym.to_string(), addr, size: 0, kind });
        }
        Ok(Self::new(symbols))
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The symbol named `name`.
    pub fn get(&self, name: &str) -> Option<&Symbol> {
        self.by_name.get(name).map(|&i| &self.symbols[i])
    }

    /// The address of `name`.
    pub fn resolve(&self, name: &str) -> Option<u64> {
        self.get(name).map(|s| s.addr)
    }

    /// The symbol containing `addr` (nearest one at or below it, within its size when the
    /// size is known).
    pub fn locate(&self, addr: u64) -> Option<Located<'_>> {
        let idx = self.symbols.partition_point(|s| s.addr <= addr).checked_sub(1)?;
        let nearest = self.symbols[idx].addr;
        let offset = addr - nearest;
        // The nearest symbol (or an alias at the same address): sized ones must cover addr.
        let aliases = self.symbols[..=idx].iter().rev().take_while(|s| s.addr == nearest);
        let mut unsized_alias = None;
        for s in aliases {
            if s.size > offset {
                return Some(Located { symbol: s, offset });
            }
            if s.size == 0 && unsized_alias.is_none() {
                unsized_alias = Some(s);
            }
        }
        if let Some(s) = unsized_alias.filter(|_| offset < MAX_UNSIZED_OFFSET) {
            return Some(Located { symbol: s, offset });
        }
        // An enclosing sized symbol that starts earlier (a function around a local label).
        self.symbols[..idx]
            .iter()
            .rev()
            .take(8)
            .find(|s| s.size > 0 && addr - s.addr < s.size)
            .map(|s| Located { symbol: s, offset: addr - s.addr })
    }

    /// All symbols.
    pub fn iter(&self) -> impl Iterator<Item = &Symbol> {
        self.symbols.iter()
    }
}

impl Symbolize for SymbolTable {
    fn symbolize(&self, addr: u64) -> Option<String> {
        self.locate(addr).map(|l| l.to_string())
    }
}

#[cfg(test)]
mod tests;
