//! The snapshot commands of a debug session and of gdb's `monitor`: `snapshot FILE`. The
//! frontends pass each line here first ([`execute_line`]); a line that is not a snapshot
//! command is theirs.

use super::{save, SnapshotError};
use crate::machine::Machine;
use std::path::Path;

/// The commands this module answers, for `help`.
pub const HELP: &str = "snapshot FILE       write the whole guest (vCPUs, devices, memory, breakpoints) to FILE; `vmscope run --restore FILE` resumes it\n";

/// What `snapshot FILE` reports: text for people, JSON for scripts.
#[derive(Debug)]
pub struct Output {
    /// For people.
    pub text: String,
    /// For scripts (the saved file's summary).
    pub json: serde_json::Value,
}

/// Runs `line` if it is a snapshot command; `None` if it is not one.
pub fn execute_line(machine: &Machine, line: &str) -> Option<Result<Output, SnapshotError>> {
    let line = line.trim();
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    if word != "snapshot" {
        return None;
    }
    let path = rest.trim();
    if path.is_empty() {
        return Some(Err(SnapshotError::BadSection {
            section: "command".into(),
            detail: "usage: snapshot FILE".into(),
        }));
    }
    Some(save(machine, Path::new(path)).map(|s| {
        let text = format!(
            "snapshot written to {}: {} MiB of RAM ({} KiB not zero), {} sections, {:.1} ms{}\n",
            s.path.display(),
            s.mem_bytes >> 20,
            s.nonzero_bytes >> 10,
            s.sections.len(),
            s.elapsed_ns as f64 / 1e6,
            if s.refused.is_empty() {
                String::new()
            } else {
                format!("; the host refused: {}", s.refused.join(", "))
            }
        );
        let json = serde_json::to_value(&s).unwrap_or_default();
        Output { text, json }
    }))
}
