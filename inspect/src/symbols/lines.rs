//! Source locations from DWARF line tables (addr2line).

use super::SymbolError;
use std::path::Path;

/// `addr → file:line` for one ELF with DWARF.
pub struct SourceLines {
    loader: addr2line::Loader,
}

impl std::fmt::Debug for SourceLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceLines")
    }
}

impl SourceLines {
    /// Loads the DWARF of the ELF at `path`.
    pub fn load(path: &Path) -> Result<Self, SymbolError> {
        addr2line::Loader::new(path)
            .map(|loader| Self { loader })
            .map_err(|e| SymbolError::Dwarf { name: path.display().to_string(), reason: e.to_string() })
    }

    /// `file:line` for `addr`, if the line table covers it.
    pub fn locate(&self, addr: u64) -> Option<String> {
        let loc = self.loader.find_location(addr).ok()??;
        Some(match (loc.file, loc.line) {
            (Some(f), Some(l)) => format!("{f}:{l}"),
            (Some(f), None) => f.to_string(),
            _ => return None,
        })
    }
}
